"""set_graph_function and set_graph_notrace (kernel/trace/ftrace.c: ftrace_graph_open(),
ftrace_graph_write(), ftrace_set_func(), g_show(); the same in the v4.4-v4.8 trees but for
v4.8.15's skip of DISABLED records), and max_graph_depth (trace_functions_graph.c).

Unlike the filter files, each write has a parser of its own (a token split across two writes
is two tokens), each token changes the table at once (there is no hash to commit at close),
and the table is an array of at most FTRACE_GRAPH_MAX_FUNCS addresses in the order written.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Generator

from ..errors import FtraceDead, TracefsError
from ..flags import FTRACE_FL_DISABLED
from ..hash import filter_parse_regex, ftrace_match
from ..kernels import DISABLED_IGNORED_EVERYWHERE
from ..tracer import FTRACE_GRAPH_MAX_FUNCS
from .parser import TraceParser
from .regex import O_TRUNC

if TYPE_CHECKING:
    from ..system import System

GRAPH_FILES = {"set_graph_function": "graph_funcs", "set_graph_notrace": "notrace_funcs"}


def ftrace_set_func(system: "System", table: list[int], buffer: str) -> Generator[object, None, int]:
    """ftrace_set_func(): add the records a glob matches to table (remove them for '!');
    0, or -EBUSY (full), -ENODEV (ftrace is dead), -EINVAL (nothing matched)."""
    kind, search, negate = filter_parse_regex(buffer)
    if not negate and len(table) >= FTRACE_GRAPH_MAX_FUNCS:
        return -errno.EBUSY
    ftrace = system.ftrace
    skip_disabled = ftrace.kernel.has(DISABLED_IGNORED_EVERYWHERE)
    kallsyms = system.kernel.kallsyms
    fail = True
    yield from ftrace.ftrace_lock.acquire()
    try:
        ftrace.touch_disabled()
        if ftrace.ftrace_disabled:
            return -errno.ENODEV
        for rec in ftrace.records:
            if skip_disabled and rec.flags & FTRACE_FL_DISABLED:
                continue
            hit = kallsyms.lookup(rec.ip)
            if hit is None or not ftrace_match(hit[0].name, kind, search):
                continue
            exists = rec.ip in table
            if not negate:
                fail = False
                if not exists:
                    table.append(rec.ip)
                    if len(table) >= FTRACE_GRAPH_MAX_FUNCS:
                        break
            elif exists:
                i = table.index(rec.ip)  # array[i] = array[--(*idx)]: the last one moves up
                last = table.pop()
                if i < len(table):
                    table[i] = last
                fail = False
    finally:
        ftrace.ftrace_lock.release()
    return -errno.EINVAL if fail else 0


class GraphHandle:
    """An open set_graph_function / set_graph_notrace."""

    def __init__(self, system: "System", name: str, flags: int):
        self.system, self.name, self.flags = system, name, flags
        self.table: list[int] = getattr(system.graph, GRAPH_FILES[name])
        self._text: str | None = None
        if system.ftrace.ftrace_disabled:  # ftrace_graph_open(): -ENODEV
            raise FtraceDead(name)
        if (flags & 3) and flags & O_TRUNC:  # __ftrace_graph_open(): O_TRUNC empties the table
            self.table.clear()

    def read_steps(self) -> Generator[object, None, str]:
        if self._text is None:
            if not self.table:  # g_show()
                self._text = ("#### all functions enabled ####\n" if self.name == "set_graph_function"
                              else "#### no functions disabled ####\n")
            else:
                self._text = "".join(f"{self.system.env.name_ip(ip)}\n" for ip in self.table)
        yield from ()
        return self._text

    def write_steps(self, data: bytes) -> Generator[object, None, int]:
        """ftrace_graph_write(): one token, then ftrace_set_func() with it."""
        parser = TraceParser()
        read = parser.get_user(data)
        if read < 0:
            raise TracefsError(f"{self.name}: token too long", -read)
        if parser.loaded:
            ret = yield from ftrace_set_func(self.system, self.table, parser.token)
            if ret == -errno.ENODEV:
                raise FtraceDead(self.name)
            if ret:
                why = {errno.EBUSY: f"already {FTRACE_GRAPH_MAX_FUNCS} functions",
                       errno.EINVAL: "no function matches"}[-ret]
                raise TracefsError(f"{self.name}: {parser.token!r}: {why}", -ret)
        return read

    def release_steps(self) -> Generator[object, None, None]:
        yield from ()
