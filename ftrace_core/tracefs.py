"""tracefs: the files a person uses to drive ftrace, with the kernel's formats and errors.

`read(name)` returns a file's text; `write(name, text, append=False)` is `echo text > name`
(or `>>`).  The `*_steps` forms are the same operations as generators, for running them as a
task on an emulated CPU.  One deliberate difference from the kernel: a filter write with a
token that matches nothing fails with -EINVAL and leaves the filter as it was, where the
kernel would still commit the (truncated) hash when the file is closed.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Generator, Iterator

from emu.sched import Lock, run_to_completion

from .errors import FtraceDead, TracefsError
from .flags import FTRACE_FL_DISABLED, FTRACE_FL_ENABLED, FTRACE_FL_IPMODIFY, FTRACE_FL_REGS, FTRACE_FL_TRAMP_EN, ftrace_rec_count
from .kernels import DISABLED_IGNORED_EVERYWHERE
from .hash import FtraceHash, MatchType, filter_parse_regex, ftrace_match
from .flags import FTRACE_START_FUNC_RET, FTRACE_STOP_FUNC_RET
from .output import GRAPH_HEADER, format_entries, format_graph, format_lost, format_trace
from .tracer import ENTRY_BYTES

if TYPE_CHECKING:
    from .system import System

TRACERS = ("function_graph", "function", "nop")
_UNDER_FTRACE_LOCK = ("set_ftrace_filter", "set_ftrace_notrace", "available_filter_functions", "enabled_functions")
#: The files, for checking names before anything runs (scenario files, the CLI).
WRITABLE_FILES = ("buffer_size_kb", "current_tracer", "set_ftrace_filter", "set_ftrace_notrace", "trace",
                  "tracing_on")
READABLE_FILES = ("available_filter_functions", "available_tracers", "buffer_size_kb", "current_tracer",
                  "enabled_functions", "set_ftrace_filter", "set_ftrace_notrace", "trace", "trace_pipe", "tracing_on")
#: Per-CPU buffers are held in host memory: keep them to a sane size.
MAX_BUFFER_KB = 65536


class Tracefs:
    def __init__(self, system: "System"):
        self.system = system
        self.current_tracer = "nop"
        self.trace_types_lock = Lock("trace_types_lock")
        self._readers: dict[str, Callable[[], str]] = {
            "current_tracer": lambda: self.current_tracer + "\n",
            "available_tracers": lambda: " ".join(TRACERS) + "\n",
            "tracing_on": lambda: ("1" if system.tracer.tracing_on else "0") + "\n",
            "set_ftrace_filter": lambda: self._read_hash(system.global_ops.filter_hash, notrace=False),
            "set_ftrace_notrace": lambda: self._read_hash(system.global_ops.notrace_hash, notrace=True),
            "available_filter_functions": self._available_filter_functions,
            "enabled_functions": self._enabled_functions,
            "trace": self._trace,
            "trace_pipe": self._trace_pipe,
            "buffer_size_kb": self._buffer_size_kb,
        }
        self._writers = {
            "current_tracer": self._write_current_tracer,
            "tracing_on": self._write_tracing_on,
            "set_ftrace_filter": lambda text, append: self._write_hash(text, append, filter_hash=True),
            "set_ftrace_notrace": lambda text, append: self._write_hash(text, append, filter_hash=False),
            "trace": self._write_trace,
            "buffer_size_kb": self._write_buffer_size_kb,
        }

    @property
    def files(self) -> list[str]:
        return sorted(self._readers)

    # -- the interface ----------------------------------------------------------------------
    def read(self, name: str) -> str:
        return run_to_completion(self.read_steps(name))

    def read_steps(self, name: str) -> Generator[object, None, str]:
        """`cat name`: files showing ftrace's records and hashes are read under ftrace_lock,
        as the kernel's seq_file iterators take it."""
        reader = self._readers.get(name)
        if reader is None:
            raise TracefsError(f"{name}: no such tracefs file (have: {', '.join(self.files)})", errno.ENOENT)
        if name in _UNDER_FTRACE_LOCK:
            lock = self.system.ftrace.ftrace_lock
            yield from lock.acquire()
            try:
                return reader()
            finally:
                lock.release()
        if name == "current_tracer":
            yield from self.trace_types_lock.acquire()
            try:
                return reader()
            finally:
                self.trace_types_lock.release()
        self._touch(("trace",), write=name == "trace_pipe")
        self.system.ftrace.touch_disabled()
        return reader()

    def write(self, name: str, text: str, append: bool = False) -> None:
        run_to_completion(self.write_steps(name, text, append))

    def write_steps(self, name: str, text: str, append: bool = False) -> Generator[object, None, None]:
        writer = self._writers.get(name)
        if writer is None:
            if name in self._readers:
                raise TracefsError(f"{name}: file is read-only", errno.EACCES)
            raise TracefsError(f"{name}: no such tracefs file (have: {', '.join(self.files)})", errno.ENOENT)
        yield from writer(text, append)

    def _touch(self, token: object, write: bool) -> None:
        tracker = self.system.kernel.machine.tracker
        if tracker is not None:
            tracker.touch(token, write)

    # -- current_tracer, tracing_on, trace ----------------------------------------------------
    def _write_current_tracer(self, text: str, append: bool) -> Iterator[object]:
        name = text.strip()
        if name not in TRACERS:
            raise TracefsError(f"current_tracer: no tracer named {name!r} (available: {' '.join(TRACERS)})",
                               errno.EINVAL)
        # tracing_set_tracer() runs under trace_types_lock.
        yield from self.trace_types_lock.acquire()
        try:
            if name == self.current_tracer:
                return
            yield from self._tracer_stop(self.current_tracer)
            self.current_tracer = "nop"
            self._touch(("trace",), write=True)
            self.system.buffer.reset()  # tracer_init() resets the buffers
            yield from self._tracer_start(name)
            self.current_tracer = name
        finally:
            self.trace_types_lock.release()

    def _tracer_start(self, name: str) -> Iterator[object]:
        """function: global_ops calls function_trace_call.  function_graph: global_ops calls
        the stub and ftrace_graph_call jumps to the graph caller (register_ftrace_graph)."""
        s = self.system
        if name == "nop":
            return
        graph = name == "function_graph"
        s.configure_global_ops(graph)
        ret = yield from s.ftrace.register_ftrace_function(s.global_ops, FTRACE_START_FUNC_RET if graph else 0)
        if ret:
            raise self._errno_error("current_tracer", ret)
        s.graph.active = graph

    def _tracer_stop(self, name: str) -> Iterator[object]:
        s = self.system
        if name == "nop":
            return
        graph = name == "function_graph"
        ret = yield from s.ftrace.unregister_ftrace_function(s.global_ops, FTRACE_STOP_FUNC_RET if graph else 0)
        if ret:
            raise self._errno_error("current_tracer", ret)
        s.graph.active = False

    def _write_tracing_on(self, text: str, append: bool) -> Iterator[object]:
        value = text.strip()
        if value not in ("0", "1"):
            raise TracefsError(f"tracing_on: expected 0 or 1, got {value!r}", errno.EINVAL)
        self._touch(("trace",), write=True)
        self.system.tracer.tracing_on = value == "1"
        yield from ()

    def _write_trace(self, text: str, append: bool) -> Iterator[object]:
        """`echo > trace` empties the buffers (O_TRUNC)."""
        if not append:
            self._touch(("trace",), write=True)
            self.system.buffer.reset()
        yield from ()

    def _trace(self) -> str:
        s = self.system
        if self.current_tracer == "function_graph":
            return format_graph(s.buffer.entries(), s.env.name_ip, len(s.kernel.cpus), "function_graph",
                                s.ftrace.ftrace_disabled)
        return format_trace(self.current_tracer, s.buffer, len(s.kernel.cpus), s.ftrace.ftrace_disabled,
                            s.env.name_ip)

    def _trace_pipe(self) -> str:
        entries, lost = self.system.buffer.consume()
        if self.current_tracer == "function_graph":
            text = format_graph(entries, self.system.env.name_ip, len(self.system.kernel.cpus)).split(
                GRAPH_HEADER, 1)[1]
            return "".join(format_lost(cpu, n) for cpu, n in enumerate(lost) if n) + text
        return format_entries(entries, self.system.env.name_ip, lost)

    def _buffer_size_kb(self) -> str:
        return f"{self.system.buffer.entries_per_cpu * ENTRY_BYTES // 1024}\n"

    def _write_buffer_size_kb(self, text: str, append: bool) -> Iterator[object]:
        value = text.strip()
        if not value.isdigit() or int(value) == 0 or int(value) > MAX_BUFFER_KB:
            raise TracefsError(f"buffer_size_kb: expected a size in KB from 1 to {MAX_BUFFER_KB}, got {value!r}",
                               errno.EINVAL)
        self._touch(("trace",), write=True)
        self.system.buffer.resize(max(1, int(value) * 1024 // ENTRY_BYTES))
        yield from ()

    # -- filters ----------------------------------------------------------------------------
    def _read_hash(self, hash_: FtraceHash, notrace: bool) -> str:
        if hash_.empty:
            return "#### no functions disabled ####\n" if notrace else "#### all functions enabled ####\n"
        name = self.system.env.name_ip
        return "".join(f"{name(rec.ip)}\n" for rec in self.system.ftrace.records if rec.ip in hash_)

    def _write_hash(self, text: str, append: bool, filter_hash: bool) -> Iterator[object]:
        ftrace, ops = self.system.ftrace, self.system.global_ops
        file = "set_ftrace_filter" if filter_hash else "set_ftrace_notrace"
        # Matching walks the records and committing swaps the hash: both under ftrace_lock.
        yield from ftrace.ftrace_lock.acquire()
        try:
            if ftrace.ftrace_disabled:
                raise FtraceDead(file)
            current = ops.filter_hash if filter_hash else ops.notrace_hash
            new = current.copy() if append else FtraceHash()
            for token in text.split():
                found = self.match_records(new, token)
                if found < 0:
                    raise TracefsError(f"{file}: {token!r}: invalid command", errno.EINVAL)
                if found == 0:
                    raise TracefsError(f"{file}: {token!r} matches no function", errno.EINVAL)
            ret = yield from ftrace.ftrace_hash_move_and_update_ops(ops, filter_hash, new)
        finally:
            ftrace.ftrace_lock.release()
        if ret:
            raise self._errno_error(file, ret)

    def match_records(self, hash_: FtraceHash, token: str) -> int:
        """ftrace_process_regex(): apply one token ("func", "!func", "func:mod:module") to
        hash_; the number of records it matched, or -1 for an unknown command."""
        func, _, rest = token.partition(":")
        module: str | None = None
        if rest:
            cmd, _, arg = rest.partition(":")
            if cmd != "mod":
                return -1
            module = arg
        negate_func = func.startswith("!")
        kind, search, _ = filter_parse_regex(func)
        if func in ("", "!"):
            kind, search = MatchType.FRONT_ONLY, ""  # an empty function matches them all
        mod_kind = mod_search = None
        exclude_mod = False
        if module is not None and module not in ("", "!", "*"):
            mod_kind, mod_search, exclude_mod = filter_parse_regex(module)
        found = 0
        kallsyms = self.system.kernel.kallsyms
        ftrace = self.system.ftrace
        # v4.8.15 on: "if (rec->flags & FTRACE_FL_DISABLED) continue;" -- before, a filter
        # also picks up the records of a module still loading.
        skip_disabled = ftrace.kernel.has(DISABLED_IGNORED_EVERYWHERE)
        for rec in ftrace.records:
            if skip_disabled and rec.flags & FTRACE_FL_DISABLED:
                continue
            hit = kallsyms.lookup(rec.ip)
            if hit is None:
                continue
            sym = hit[0]
            if module is not None:
                if module in ("", "*"):
                    if sym.module is None:
                        continue
                elif module == "!":
                    if sym.module is not None:
                        continue
                else:
                    in_mod = sym.module is not None and ftrace_match(sym.module, mod_kind, mod_search)
                    if in_mod == exclude_mod:
                        continue
            if not ftrace_match(sym.name, kind, search):
                continue
            found += 1
            if negate_func:
                hash_.remove(rec.ip)
            else:
                hash_.add(rec.ip)
        return found

    # -- listings ---------------------------------------------------------------------------
    def _available_filter_functions(self) -> str:
        ftrace = self.system.ftrace
        if ftrace.ftrace_disabled:
            return ""
        name = self.system.env.name_ip
        return "".join(f"{name(rec.ip)}\n" for rec in ftrace.records)

    def _enabled_functions(self) -> str:
        ftrace = self.system.ftrace
        if ftrace.ftrace_disabled:
            return ""
        env = self.system.env
        target = ftrace.ftrace_trace_function
        lines = []
        for rec in ftrace.records:
            if not rec.flags & FTRACE_FL_ENABLED:
                continue
            line = (f"{env.name_ip(rec.ip)} ({ftrace_rec_count(rec.flags)})"
                    f"{' R' if rec.flags & FTRACE_FL_REGS else '  '}"
                    f"{' I' if rec.flags & FTRACE_FL_IPMODIFY else '  '}")
            if rec.flags & FTRACE_FL_TRAMP_EN:
                line += f"\ttramp: {env.format_ip(ftrace.ftrace_get_addr_curr(rec))}"
            line += f" ->{env.format_ip(target)}"
            lines.append(line + "\n")
        return "".join(lines)

    @staticmethod
    def _errno_error(file: str, ret: int) -> TracefsError:
        if ret == -errno.ENODEV:
            return FtraceDead(file)
        return TracefsError(f"{file}: failed with {-ret} ({errno.errorcode.get(-ret, '?')})", -ret)
