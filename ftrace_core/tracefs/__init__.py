"""tracefs: the files a person uses to drive ftrace, with the kernel's formats, errors and
file semantics (open, write, release), in one place for the CLI, the shell and the API.

`open_steps(name, flags)` gives a handle whose `read_steps()`, `write_steps(data)` and
`release_steps()` are what the kernel's file_operations do.  `read(name)` is `cat name`;
`write(name, text, append=False)` is `echo text > name` (or `>>`): an open with O_TRUNC (or
O_APPEND), writes of what remains until all is taken (each write of a filter file takes one
token, as trace_get_user does), then the release, whether a write failed or not.  The
`*_steps` forms are generators, for running them as a task on an emulated CPU.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generator, Iterator

from emu.sched import Lock, run_to_completion

from ..errors import TracefsError
from ..flags import FTRACE_FL_ENABLED, FTRACE_FL_IPMODIFY, FTRACE_FL_REGS, FTRACE_FL_TRAMP_EN, ftrace_rec_count
from ..hash import FtraceHash
from . import buffers as _buffers, events as _events, options as _options
from ..kstr import kstrtoul
from .array import TRACERS, TraceArray, nsecs_read
from .graph import GRAPH_FILES, GraphHandle
from .regex import O_APPEND, O_TRUNC, RegexHandle

if TYPE_CHECKING:
    from ..system import System

O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
#: The files, for checking names before anything runs (scenario files, the CLI): those of
#: the newest tree here (a trace array's are also valid under instances/NAME/).
_ARRAY_WRITABLE = ("buffer_size_kb", "current_tracer", "events/enable", "set_event", "set_ftrace_filter",
                   "set_ftrace_notrace", "set_ftrace_pid", "trace", "trace_clock", "trace_marker", "trace_options",
                   "tracing_cpumask", "tracing_max_latency", "tracing_on",
                   *_options.option_files(lambda feature: True), *_buffers.WRITABLE)
WRITABLE_FILES = (*_ARRAY_WRITABLE, "max_graph_depth", "set_graph_function", "set_graph_notrace", "tracing_thresh",
                  "function_profile_enabled", "stack_max_size", "stack_trace_filter")  # the last: ftrace_core.tracers
READABLE_FILES = (*_ARRAY_WRITABLE, "available_tracers", "trace_pipe",
                  *(name for name in _buffers.READABLE if name not in _ARRAY_WRITABLE), *_events.READABLE, "README",
                  "available_events", "available_filter_functions", "enabled_functions", "max_graph_depth",
                  "set_graph_function", "set_graph_notrace", "tracing_thresh",
                  "function_profile_enabled", "trace_stat/function0", "trace_stat/function1",
                  "stack_max_size", "stack_trace", "stack_trace_filter")
#: The modes of the files added without one: the whole of ftrace's, as ftrace_init_dyn_tracefs()
#: (kernel/trace/ftrace.c) creates them in the v4.4-v4.8 trees, and the tracers' (a trace
#: array's files carry the modes init_tracer_tracefs() gives them).
FILE_MODES = {
    "available_filter_functions": 0o444, "enabled_functions": 0o444, "max_graph_depth": 0o644, "README": 0o444,
    # 0444, though writable by root: as ftrace_init_dyn_tracefs() makes them in v4.4-v4.8
    "set_graph_function": 0o444, "set_graph_notrace": 0o444,
    # ftrace_profile_tracefs() and register_stat_tracer() (ftrace.c, trace_stat.c), stack_trace_init()
    # (trace_stack.c; stack_trace_filter 0444 though writable by root), v4.5 and v4.8
    "function_profile_enabled": 0o644, "trace_stat/function0": 0o644, "trace_stat/function1": 0o644,
    "stack_max_size": 0o644, "stack_trace": 0o444, "stack_trace_filter": 0o444,
}
#: Per-CPU buffers are held in host memory: keep them to a sane size.
MAX_BUFFER_KB = 65536
ULONG_MAX = (1 << 64) - 1
#: instance_mkdir(): the directory under which `mkdir` makes a trace array.
INSTANCES = "instances"


class _SeqRead:
    """A read shows the file as it was at the first read of this open, as seq_file does."""

    tracefs: "Tracefs"
    name: str
    _text: str | None = None

    def read_steps(self) -> Generator[object, None, str]:
        if self._text is None:
            self._text = yield from self.tracefs._read_now(self.name)
        return self._text


class SimpleHandle(_SeqRead):
    """An open file whose write takes the whole buffer at once (the kernel's simple writes):
    current_tracer, tracing_on, trace, buffer_size_kb."""

    def __init__(self, tracefs: "Tracefs", name: str, flags: int):
        self.tracefs, self.name, self.flags = tracefs, name, flags

    def write_steps(self, data: bytes) -> Generator[object, None, int]:
        write = self.tracefs._files[self.name].write
        if write is None:
            raise TracefsError(f"{self.name}: not writable", errno.EINVAL)
        taken = yield from write(data)
        return len(data) if taken is None else taken  # a tokenizing writer says how much it took

    def release_steps(self) -> Generator[object, None, None]:
        yield from ()


class FilterHandle(_SeqRead, RegexHandle):
    """set_ftrace_filter / set_ftrace_notrace of a trace array's ops: ftrace_regex_open()
    semantics, and reads of the committed hash under ftrace_lock."""

    def __init__(self, tracefs: "Tracefs", name: str, filter_hash: bool, flags: int, ops=None):
        RegexHandle.__init__(self, tracefs.system, name, filter_hash, (flags & 3) != O_RDONLY, flags, ops)
        self.tracefs = tracefs


class OpenFile:
    """An open tracefs file used from plain code (the mount): each call runs its step to the
    end, as the file_operations of one open file."""

    def __init__(self, tracefs: "Tracefs", name: str, handle: object):
        self.tracefs, self.name, self.handle = tracefs, name, handle

    def read(self) -> str:
        """The file's text, the same for every read of this open (seq_file)."""
        return run_to_completion(self.handle.read_steps())

    def read_pipe(self) -> str | bytes:
        """trace_pipe: what is in the buffers now, consumed ('' when empty); trace_pipe_raw:
        the next page's bytes, consumed (b'' when empty)."""
        return run_to_completion(self.tracefs._read_now(self.name))

    def write(self, data: bytes) -> int:
        return run_to_completion(self.handle.write_steps(data))

    def release(self) -> None:
        run_to_completion(self.handle.release_steps())


class _Held:
    """An open file of an instance: the instance is in use until the file is released
    (trace_array_get() at open, trace_array_put() at release)."""

    def __init__(self, handle, array: TraceArray):
        self.handle, self.array = handle, array
        array.refs += 1

    def read_steps(self):
        return self.handle.read_steps()

    def write_steps(self, data: bytes):
        return self.handle.write_steps(data)

    def release_steps(self) -> Generator[object, None, None]:
        try:
            yield from self.handle.release_steps()
        finally:
            self.array.refs -= 1


@dataclass(frozen=True)
class TracefsFile:
    """One file of the tree: its mode (as the tree creates it), what a read shows, what a
    write does (a generator step; it may return how many bytes it took), an opener for files
    with an open/release model of their own, and the lock its reads take."""

    mode: int
    read: Callable[[], str]
    write: Callable[[bytes], Iterator[object]] | None = None
    opener: Callable[[str, int], object] | None = None
    lock: str | None = None  # "ftrace_lock" or "trace_types_lock"


class Tracefs:
    """The tree: files by path ("events/enable"), each a TracefsFile, and its directories.
    The top-level trace array's files and the files of the whole of ftrace (the records,
    the graph filters, README) are at the top; each instance's under instances/NAME/.
    The other pieces (set_ftrace_pid, the profiler, the stack tracer) add theirs with add()."""

    def __init__(self, system: "System"):
        self.system = system
        self.trace_types_lock = Lock("trace_types_lock")
        self._files: dict[str, TracefsFile] = {}
        self.dirs: set[str] = {INSTANCES}  # directories that exist even when empty
        self.instances: dict[str, TraceArray] = {}
        add = self.add
        add("available_filter_functions", self._available_filter_functions, lock="ftrace_lock")
        add("enabled_functions", self._enabled_functions, lock="ftrace_lock")
        for name in GRAPH_FILES:
            add(name, lambda n=name: run_to_completion(GraphHandle(system, n, 0).read_steps()),
                opener=self._open_graph)
        add("max_graph_depth", lambda: f"{system.graph.max_depth}\n", self._write_max_graph_depth)
        add("README", self._readme)
        # event_trace_init(): the events that can be enabled (t_show() of ftrace_avail_fops);
        # this kernel's only events are ftrace's own, flagged TRACE_EVENT_FL_IGNORE_ENABLE
        add("available_events", lambda: "", mode=0o444)
        self.thresh_ns = 0  # tracing_thresh
        add("tracing_thresh", lambda: nsecs_read(self.thresh_ns), self._write_tracing_thresh, mode=0o644)
        self.top = TraceArray(self)

    # -- the top-level trace array, as the rest of the project reaches it -----------------------
    @property
    def current_tracer(self) -> str:
        return self.top.current_tracer

    @property
    def options(self):
        return self.top.options

    @property
    def clock(self):
        return self.top.clock

    @property
    def buffers(self):
        return self.top.buffers

    def trace_text(self, cpu: int | None = None) -> str:
        return self.top.trace_text(cpu)

    def add(self, name: str, read: Callable[[], str], write: Callable[[bytes], Iterator[object]] | None = None,
            opener: Callable[[str, int], object] | None = None, lock: str | None = None,
            mode: int | None = None) -> None:
        """A file at name, with the mode its tree gives it (mode, or FILE_MODES[name])."""
        self._files[name] = TracefsFile(FILE_MODES[name] if mode is None else mode, read, write, opener, lock)

    @property
    def modes(self) -> dict[str, int]:
        """Each file's mode, by path: the tree as the mount shows it."""
        return {name: f.mode for name, f in self._files.items()}

    @property
    def files(self) -> list[str]:
        return sorted(self._files)

    @property
    def writable_files(self) -> list[str]:
        return sorted(name for name, f in self._files.items() if f.write or f.opener)

    # -- instances/ (instance_mkdir(), instance_rmdir()) ----------------------------------------
    def mkdir_steps(self, path: str) -> Generator[object, None, None]:
        """mkdir(2): only under instances/ (tracefs's other directories have no ->mkdir:
        -EPERM); an existing name is -EEXIST.  The new trace array starts with nop, the top
        level's trace options, and an empty buffer of the default size."""
        parent, _, name = path.strip("/").rpartition("/")
        if parent != INSTANCES or not name:
            raise TracefsError(f"{path}: directories are made only in {INSTANCES}/", errno.EPERM)
        yield from self.trace_types_lock.acquire()
        try:
            if name in self.instances:
                raise TracefsError(f"{path}: the instance exists", errno.EEXIST)
            self.instances[name] = TraceArray(self, name, copy_flags=set(self.top.options.flags))
        finally:
            self.trace_types_lock.release()

    def rmdir_steps(self, path: str) -> Generator[object, None, None]:
        """rmdir(2) of an instance: -EBUSY while a file of it is open, else its tracer is
        stopped (tracing_set_nop()) and its files and buffers go."""
        parent, _, name = path.strip("/").rpartition("/")
        if parent != INSTANCES or not name:
            raise TracefsError(f"{path}: only instances can be removed", errno.EPERM)
        yield from self.trace_types_lock.acquire()
        try:
            array = self.instances.get(name)
            if array is None:
                raise TracefsError(f"{path}: no such instance", errno.ENODEV)
            if array.refs:
                raise TracefsError(f"{path}: {array.refs} file(s) of it are open", errno.EBUSY)
            yield from array.set_nop()
            del self.instances[name]
            for file in [f for f in self._files if f.startswith(array.prefix)]:
                del self._files[file]
        finally:
            self.trace_types_lock.release()

    def mkdir(self, path: str) -> None:
        run_to_completion(self.mkdir_steps(path))

    def rmdir(self, path: str) -> None:
        run_to_completion(self.rmdir_steps(path))

    def _array_of(self, name: str) -> TraceArray | None:
        if name.startswith(INSTANCES + "/"):
            return self.instances.get(name.split("/", 2)[1])
        return None

    # -- the file interface -------------------------------------------------------------------
    def open_steps(self, name: str, flags: int = O_RDONLY) -> Generator[object, None, object]:
        """open(2) on a tracefs file: a handle, or TracefsError with the kernel's errno."""
        file = self._files.get(name)
        if file is None:
            raise TracefsError(f"{name}: no such tracefs file (try: ls)", errno.ENOENT)
        # A file with no write method opens for writing (root passes the mode check) and each
        # write fails with -EINVAL, as vfs_write() answers without FMODE_CAN_WRITE.
        if file.opener is not None:
            handle = yield from file.opener(name, flags)
        else:
            handle = SimpleHandle(self, name, flags)
        array = self._array_of(name)
        return _Held(handle, array) if array is not None else handle

    def _open_graph(self, name: str, flags: int) -> Generator[object, None, object]:
        yield from ()
        return GraphHandle(self.system, name, flags)

    def open(self, name: str, flags: int = O_RDONLY) -> OpenFile:
        """open(2): an OpenFile, or TracefsError with the kernel's errno."""
        return OpenFile(self, name, run_to_completion(self.open_steps(name, flags)))

    def read(self, name: str) -> str:
        return run_to_completion(self.read_steps(name))

    def read_steps(self, name: str) -> Generator[object, None, str]:
        """`cat name`: open, read, release."""
        handle = yield from self.open_steps(name)
        try:
            return (yield from handle.read_steps())
        finally:
            yield from handle.release_steps()

    def write(self, name: str, text: str, append: bool = False) -> None:
        run_to_completion(self.write_steps(name, text, append))

    def write_steps(self, name: str, text: str, append: bool = False) -> Generator[object, None, None]:
        """`echo text > name` (`>>` with append): open, write what remains until all of it is
        taken or a write fails, then release (which commits a filter file's hash either way)."""
        handle = yield from self.open_steps(name, O_WRONLY | (O_APPEND if append else O_TRUNC))
        data = (text if text.endswith("\n") else text + "\n").encode()  # echo adds the newline
        error: TracefsError | None = None
        try:
            while data:
                taken = yield from handle.write_steps(data)
                if taken <= 0:
                    break
                data = data[taken:]
        except TracefsError as exc:
            error = exc
        yield from handle.release_steps()
        if error is not None:
            raise error

    def _read_now(self, name: str) -> Generator[object, None, str]:
        """A file's text now: files showing ftrace's records and hashes are read under
        ftrace_lock, as the kernel's seq_file iterators take it."""
        file = self._files[name]
        reader = file.read
        # Whatever the file shows, hooks may have changed it (the trace, the profiler's and the
        # stack tracer's counts, a probe's count): a read of any file reads the trace token.
        self._touch(("trace",), write=name.endswith(("trace_pipe", "trace_pipe_raw")))  # they consume
        if file.lock is not None:
            lock = self.system.ftrace.ftrace_lock if file.lock == "ftrace_lock" else self.trace_types_lock
            yield from lock.acquire()
            try:
                return reader()
            finally:
                lock.release()
        self.system.ftrace.touch_disabled()
        return reader()

    def _touch(self, token: object, write: bool) -> None:
        tracker = self.system.kernel.machine.tracker
        if tracker is not None:
            tracker.touch(token, write)

    # -- the files of the whole of ftrace -------------------------------------------------------
    def _write_max_graph_depth(self, data: bytes) -> Iterator[object]:
        """graph_depth_write(): a decimal unsigned long, kept in an int (printed with %d)."""
        value = kstrtoul("max_graph_depth", data) & 0xFFFFFFFF
        self.system.graph.max_depth = value - (1 << 32) if value >> 31 else value
        yield from ()

    def _write_tracing_thresh(self, data: bytes) -> Iterator[object]:
        """tracing_thresh_write(): microseconds kept as ns, then the current tracer's
        update_thresh: function_graph starts again (graph_trace_update_thresh()), now with
        trace_graph_thresh_entry()/_return() when the threshold is set."""
        value = kstrtoul("tracing_thresh", data) * 1000 & ((1 << 64) - 1)
        yield from self.trace_types_lock.acquire()
        try:
            self.thresh_ns = value
            if self.top.current_tracer == "function_graph":
                yield from self.top._tracer_stop("function_graph")
                yield from self.top._tracer_start("function_graph")
        finally:
            self.trace_types_lock.release()

    def _readme(self) -> str:
        """README: the kernel's is a mini-HOWTO of its files (tools such as ftracetest grep it
        for the features a kernel has); this one, in this project's words, names the files
        this tracefs serves, one a line, so the same greps find exactly those."""
        lines = ["tracing mini-HOWTO (ftrace-emu): the files of this tracefs", ""]
        lines += [f"  {name}" for name in self.files if name != "README" and not name.startswith(INSTANCES + "/")]
        lines += [f"  {INSTANCES}/  (mkdir NAME: a trace array of its own)"]
        return "\n".join(lines) + "\n"

    def read_hash(self, hash_: FtraceHash, notrace: bool, probes: bool = False) -> str:
        """t_show() over an ops' hash: the functions in it, in record order, or the empty
        hash's line; then, for set_ftrace_filter (FTRACE_ITER_DO_HASH), the function probes."""
        listing = self.system.probes.listing() if probes else ""
        if hash_.empty:
            return ("#### no functions disabled ####\n" if notrace else "#### all functions enabled ####\n") + listing
        name = self.system.env.name_ip
        return "".join(f"{name(rec.ip)}\n" for rec in self.system.ftrace.records if rec.ip in hash_) + listing

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


__all__ = ["FILE_MODES", "INSTANCES", "READABLE_FILES", "TRACERS", "Tracefs", "WRITABLE_FILES", "kstrtoul"]
