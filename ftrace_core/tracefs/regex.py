"""set_ftrace_filter and set_ftrace_notrace: ftrace_regex_open(), ftrace_regex_write(),
ftrace_regex_release() and the matching behind them (kernel/trace/ftrace.c; the same from
v4.4 to v4.8.17 but where a comment names a tree).

An open for writing starts from an empty hash (O_TRUNC) or a copy of the ops' (O_APPEND);
each write() takes at most one token (trace_get_user) and adds or removes its records in that
private hash, failing with -EINVAL for a token that matches nothing or an unknown command;
release() matches a token left unterminated, then commits the hash (ftrace_hash_move) and
updates the call sites, errors or not.  So `echo bad > set_ftrace_filter` fails and leaves an
empty filter: every function traced, as on the kernel.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Generator

from ..errors import FtraceDead, TracefsError
from ..flags import FTRACE_FL_DISABLED
from ..hash import FtraceHash, MatchType, filter_parse_regex, ftrace_match
from ..kernels import DISABLED_IGNORED_EVERYWHERE
from .parser import TraceParser

if TYPE_CHECKING:
    from ..ops import FtraceOps
    from ..system import System

O_TRUNC = 0o1000
O_APPEND = 0o2000


def ftrace_regex_open_check(system: "System", name: str) -> None:
    """ftrace_regex_open()'s first test: -ENODEV once ftrace is dead (FtraceDead naming the
    file), for every filter file of every ops."""
    ftrace = system.ftrace
    ftrace.touch_disabled()
    if ftrace.ftrace_disabled:
        raise FtraceDead(name)


class RegexHandle:
    """An open set_ftrace_filter / set_ftrace_notrace (struct ftrace_iterator)."""

    def __init__(self, system: "System", name: str, filter_hash: bool, writing: bool, flags: int,
                 ops: "FtraceOps | None" = None):
        self.system = system
        self.ops = system.global_ops if ops is None else ops  # ftrace_regex_open(ops, ...)
        self.name = name
        self.filter_hash = filter_hash
        self.writing = writing
        self.parser = TraceParser()
        ops = self.ops
        current = ops.filter_hash if filter_hash else ops.notrace_hash
        self.hash: FtraceHash | None = None
        if writing:
            self.hash = FtraceHash() if flags & O_TRUNC else current.copy()

    def write_steps(self, data: bytes) -> Generator[object, None, int]:
        """ftrace_regex_write(): bytes taken (at most one token's worth), or raises."""
        if not data:
            return 0
        ftrace = self.system.ftrace
        ftrace.touch_disabled()
        if ftrace.ftrace_disabled:
            raise FtraceDead(self.name)
        read = self.parser.get_user(data)
        if read >= 0 and self.parser.loaded and not self.parser.cont:
            token = self.parser.token
            self.parser.clear()
            ret = yield from ftrace_process_regex(self.system, self.hash, token, self.filter_hash)
            if ret < 0:
                raise TracefsError(_why(self.name, token, ret), -ret)
        if read < 0:
            raise TracefsError(f"{self.name}: token longer than {self.parser.size - 2} characters", -read)
        return read

    def release_steps(self) -> Generator[object, None, None]:
        """ftrace_regex_release(): the unterminated token (as a plain function glob: no
        commands), then, if open for writing, the hash committed and the sites updated."""
        ftrace, ops = self.system.ftrace, self.ops
        if self.parser.loaded and self.hash is not None:
            yield from match_records(self.system, self.hash, self.parser.token, None)
        self.parser.clear()
        if not self.writing:
            return
        yield from ftrace.ftrace_lock.acquire()
        try:
            yield from ftrace.ftrace_hash_move_and_update_ops(ops, self.filter_hash, self.hash)
        finally:
            ftrace.ftrace_lock.release()


def _why(name: str, token: str, ret: int) -> str:
    if ret == -errno.EINVAL:
        if ":" in token:
            return f"{name}: {token!r}: no function matches, or no such command"
        return f"{name}: {token!r} matches no function"
    return f"{name}: {token!r}: {errno.errorcode.get(-ret, ret)}"


def selected_by(system: "System", token: str) -> FtraceHash | None:
    """The records one filter token would put in an empty set_ftrace_filter (for the tool's
    own questions, nothing is changed), or None if the kernel would refuse it."""
    from emu.sched import run_to_completion

    chosen = FtraceHash()
    return chosen if run_to_completion(ftrace_process_regex(system, chosen, token)) == 0 else None


def ftrace_process_regex(system: "System", hash_: FtraceHash, buff: str, enable: bool = True
                         ) -> Generator[object, None, int]:
    """ftrace_process_regex(): "func" matches records; "func:command:arg" runs a registered
    command (`mod`, and the probe commands of system.ftrace_commands); 0 or -errno."""
    func, sep, rest = buff.partition(":")
    if not sep:
        found = yield from match_records(system, hash_, func, None)
        return -errno.EINVAL if found == 0 else min(found, 0)
    command, sep, module = rest.partition(":")
    if command != "mod":
        callback = system.ftrace_commands.get(command)  # an unknown command: -EINVAL
        if callback is None:
            return -errno.EINVAL
        return (yield from callback(hash_, func, command, module if sep else None, enable))
    # ftrace_mod_callback(): match_records(hash, func, strlen(func), module); "func:mod" with
    # nothing after it has no module, and matches as "func" alone.
    found = yield from match_records(system, hash_, func, module if sep else None)
    return -errno.EINVAL if found == 0 else min(found, 0)


def match_records(system: "System", hash_: FtraceHash, func: str, module: str | None
                  ) -> Generator[object, None, int]:
    """match_records(): under ftrace_lock, add each record whose function (and module) match
    to hash_, or remove it for a `!` pattern; 1 if any matched, else 0."""
    kind, search, clear_filter = filter_parse_regex(func)
    mod_kind = mod_search = None
    exclude_mod = False
    if module is not None:
        mod_kind, mod_search, exclude_mod = filter_parse_regex(module)
    ftrace = system.ftrace
    kallsyms = system.kernel.kallsyms
    # v4.8.15 on: "if (rec->flags & FTRACE_FL_DISABLED) continue;" -- before, a filter also
    # picks up the records of a module still loading.
    skip_disabled = ftrace.kernel.has(DISABLED_IGNORED_EVERYWHERE)
    found = 0
    yield from ftrace.ftrace_lock.acquire()
    try:
        ftrace.touch_disabled()
        if ftrace.ftrace_disabled:
            return 0
        for rec in ftrace.records:
            if skip_disabled and rec.flags & FTRACE_FL_DISABLED:
                continue
            hit = kallsyms.lookup(rec.ip)
            if hit is None:
                continue
            sym = hit[0]
            if not ftrace_match_record(sym.name, sym.module, kind, search, module is not None, mod_kind,
                                       mod_search, exclude_mod):
                continue
            if clear_filter:
                hash_.remove(rec.ip)
            else:
                hash_.add(rec.ip)
            found = 1
    finally:
        ftrace.ftrace_lock.release()
    return found


def ftrace_match_record(name: str, modname: str | None, kind: MatchType, search: str, by_module: bool,
                        mod_kind: MatchType | None, mod_search: str | None, exclude_mod: bool) -> bool:
    """ftrace_match_record() (v4.5-v4.8.17; legacy's tree has it from the same merge window):
    a blank module pattern means every module (or, negated, the core kernel); a blank
    function pattern inside a module means all its functions."""
    if by_module:
        mod_matches = modname is not None and ftrace_match(modname, mod_kind, mod_search)
        if not mod_search:  # blank module globbing: modname xor exclude_mod
            if (not exclude_mod) != (modname is None):
                return not search or ftrace_match(name, kind, search)
            return False
        if modname is None or not mod_matches:
            if not exclude_mod:
                return False
        elif exclude_mod:
            return False
        if not search:
            return True
    return ftrace_match(name, kind, search)
