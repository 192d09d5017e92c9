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

from ..errors import FtraceDead, TracefsError
from ..flags import (
    FTRACE_FL_ENABLED, FTRACE_FL_IPMODIFY, FTRACE_FL_REGS, FTRACE_FL_TRAMP_EN, FTRACE_START_FUNC_RET,
    FTRACE_STOP_FUNC_RET, ftrace_rec_count,
)
from ..hash import FtraceHash
from ..output import Header, buffer_header, format_entries, format_graph, format_lost, trace_header
from ..tracer import ENTRY_BYTES, PrintEntry, trace_comm
from . import buffers as _buffers, clock as _clock, options as _options
from .graph import GRAPH_FILES, GraphHandle
from .parser import TraceParser
from .regex import O_APPEND, O_TRUNC, RegexHandle

if TYPE_CHECKING:
    from ..system import System

O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
TRACERS = ("function_graph", "function", "nop")
_FILTER_FILES = {"set_ftrace_filter": True, "set_ftrace_notrace": False}
#: The files, for checking names before anything runs (scenario files, the CLI).
WRITABLE_FILES = ("function_profile_enabled", "stack_max_size", "stack_trace_filter",  # ftrace_core.tracers
                  "buffer_size_kb", "current_tracer", "events/enable", "max_graph_depth", "trace_marker", "tracing_cpumask", "set_event", "set_ftrace_filter",
                  "set_ftrace_notrace", "set_ftrace_pid", "set_graph_function", "set_graph_notrace", "trace",
                  "tracing_on", "trace_options", "trace_clock", *_options.option_files(lambda feature: True),
                  *_buffers.WRITABLE)
READABLE_FILES = ("function_profile_enabled", "trace_stat/function0", "trace_stat/function1",
                  "stack_max_size", "stack_trace", "stack_trace_filter",  # ftrace_core.tracers
                  "README", "available_filter_functions", "available_tracers", "buffer_size_kb", "current_tracer", "events/enable",
                  "max_graph_depth", "set_event", "set_graph_function", "set_graph_notrace", "trace_marker",
                  "tracing_cpumask",
                  "enabled_functions", "set_ftrace_filter", "set_ftrace_notrace", "set_ftrace_pid", "trace", "trace_pipe",
                  "tracing_on", "trace_options", "trace_clock", *_options.option_files(lambda feature: True),
                  *_buffers.READABLE)
#: Each file's mode, as tracer_init_tracefs() (kernel/trace/trace.c), ftrace_init_dyn_tracefs()
#: (kernel/trace/ftrace.c) and create_event_toplevel_files() (kernel/trace/trace_events.c)
#: create them in the v4.4-v4.8 trees.
FILE_MODES = {
    # ftrace_profile_tracefs() and register_stat_tracer() (ftrace.c, trace_stat.c), stack_trace_init()
    # (trace_stack.c; stack_trace_filter 0444 though writable by root), v4.5 and v4.8
    "function_profile_enabled": 0o644, "trace_stat/function0": 0o644, "trace_stat/function1": 0o644,
    "stack_max_size": 0o644, "stack_trace": 0o444, "stack_trace_filter": 0o444,
    "available_filter_functions": 0o444, "available_tracers": 0o444, "buffer_size_kb": 0o644,
    "current_tracer": 0o644, "enabled_functions": 0o444, "set_event": 0o644, "set_ftrace_filter": 0o644,
    # 0444, though writable by root: as ftrace_init_dyn_tracefs() makes them in v4.4-v4.8
    "set_graph_function": 0o444, "set_graph_notrace": 0o444, "max_graph_depth": 0o644,
    "events/enable": 0o644, "trace_marker": 0o220, "tracing_cpumask": 0o644, "README": 0o444,
    "set_ftrace_notrace": 0o644, "trace": 0o644, "trace_pipe": 0o444, "tracing_on": 0o644,
    "set_ftrace_pid": 0o644,  # ftrace_init_tracefs() (kernel/trace/ftrace.c), v4.5 and v4.8
    "trace_options": 0o644, "trace_clock": 0o644,
    # options/: every core option and every tracer's, each 0644 (of the newest tree here)
    **_options.option_files(lambda feature: True),
}
#: Per-CPU buffers are held in host memory: keep them to a sane size.
MAX_BUFFER_KB = 65536
ULONG_MAX = (1 << 64) - 1


def kstrtoul(name: str, data: bytes) -> int:
    """kstrtoul_from_user(buf, count, 10): a decimal unsigned long, one trailing newline
    allowed; -EINVAL otherwise, -ERANGE past ULONG_MAX."""
    text = data.decode("latin-1")
    if text.endswith("\n"):
        text = text[:-1]
    if text.startswith("+"):
        text = text[1:]
    if not text or not text.isascii() or not text.isdigit():
        raise TracefsError(f"{name}: {data!r} is not a decimal number", errno.EINVAL)
    value = int(text)
    if value > ULONG_MAX:
        raise TracefsError(f"{name}: {text} is out of range", errno.ERANGE)
    return value


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
    """set_ftrace_filter / set_ftrace_notrace: ftrace_regex_open() semantics, and reads of
    the committed hash under ftrace_lock."""

    def __init__(self, tracefs: "Tracefs", name: str, flags: int):
        RegexHandle.__init__(self, tracefs.system, name, _FILTER_FILES[name], (flags & 3) != O_RDONLY, flags)
        self.tracefs = tracefs


class OpenFile:
    """An open tracefs file used from plain code (the mount): each call runs its step to the
    end, as the file_operations of one open file."""

    def __init__(self, tracefs: "Tracefs", name: str, handle: object):
        self.tracefs, self.name, self.handle = tracefs, name, handle

    def read(self) -> str:
        """The file's text, the same for every read of this open (seq_file)."""
        return run_to_completion(self.handle.read_steps())

    def read_pipe(self) -> str:
        """trace_pipe: what is in the buffers now, consumed ('' when empty)."""
        return run_to_completion(self.tracefs._read_now(self.name))

    def write(self, data: bytes) -> int:
        return run_to_completion(self.handle.write_steps(data))

    def release(self) -> None:
        run_to_completion(self.handle.release_steps())


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
    """The tree: files by path ("events/enable"), each a TracefsFile; the tracefs pieces
    (options, trace_clock, ...) add theirs with add()."""

    def __init__(self, system: "System"):
        self.system = system
        self.current_tracer = "nop"
        self.trace_types_lock = Lock("trace_types_lock")
        self._files: dict[str, TracefsFile] = {}
        add = self.add
        add("current_tracer", lambda: self.current_tracer + "\n", self._write_current_tracer, lock="trace_types_lock")
        add("available_tracers", lambda: " ".join(TRACERS) + "\n")
        add("tracing_on", lambda: ("1" if system.tracer.tracing_on else "0") + "\n", self._write_tracing_on)
        for name, enable in _FILTER_FILES.items():
            hash_ = "filter_hash" if enable else "notrace_hash"
            add(name, lambda h=hash_, n=not enable: self._read_hash(getattr(system.global_ops, h), notrace=n),
                opener=self._open_filter, lock="ftrace_lock")
        add("available_filter_functions", self._available_filter_functions, lock="ftrace_lock")
        add("enabled_functions", self._enabled_functions, lock="ftrace_lock")
        add("trace", self.trace_text, self._write_trace, opener=self._open_trace)
        add("trace_pipe", self.trace_pipe_text)
        add("set_event", lambda: "", self._write_set_event)  # no event is enabled: none can be
        for name in GRAPH_FILES:
            add(name, lambda n=name: run_to_completion(GraphHandle(system, n, 0).read_steps()),
                opener=self._open_graph)
        add("max_graph_depth", lambda: f"{system.graph.max_depth}\n", self._write_max_graph_depth)
        # system_enable_read(): the ftrace events count (they have a ->reg) and none is on
        add("events/enable", lambda: "0\n", self._write_events_enable)
        add("trace_marker", self._read_trace_marker, self._write_trace_marker)
        add("README", self._readme)
        # tracing_cpumask_read(): "%*pb", the mask's nr_cpu_ids bits in hex
        add("tracing_cpumask", lambda: f"{sum(1 << c for c in system.buffer.recording_cpus):x}\n",
            self._write_tracing_cpumask)
        self.clock = _clock.install(self)
        self.options = _options.install(self)
        self.buffers = _buffers.install(self)
        add("buffer_size_kb", self.buffers.buffer_size_kb, self.buffers.write_buffer_size_kb)

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

    # -- the file interface -------------------------------------------------------------------
    def open_steps(self, name: str, flags: int = O_RDONLY) -> Generator[object, None, object]:
        """open(2) on a tracefs file: a handle, or TracefsError with the kernel's errno."""
        file = self._files.get(name)
        if file is None:
            raise TracefsError(f"{name}: no such tracefs file (have: {', '.join(self.files)})", errno.ENOENT)
        # A file with no write method opens for writing (root passes the mode check) and each
        # write fails with -EINVAL, as vfs_write() answers without FMODE_CAN_WRITE.
        if file.opener is not None:
            return (yield from file.opener(name, flags))
        return SimpleHandle(self, name, flags)

    def _open_filter(self, name: str, flags: int) -> Generator[object, None, object]:
        ftrace = self.system.ftrace
        ftrace.touch_disabled()
        if ftrace.ftrace_disabled:  # ftrace_regex_open(): -ENODEV once ftrace is dead
            raise FtraceDead(name)
        yield from ()
        return FilterHandle(self, name, flags)

    def _open_graph(self, name: str, flags: int) -> Generator[object, None, object]:
        yield from ()
        return GraphHandle(self.system, name, flags)

    def _open_trace(self, name: str, flags: int, cpu: int | None = None) -> Generator[object, None, object]:
        if (flags & 3) != O_RDONLY and flags & O_TRUNC:
            # tracing_open(): opening `trace` for writing with O_TRUNC empties the buffers
            # (per_cpu/cpuN/trace: that CPU's, tracing_reset()).
            if cpu is None:
                self._reset_buffer()
            else:
                self._touch(("trace",), write=True)
                self.system.buffer.reset(cpu)
        yield from ()
        return SimpleHandle(self, name, flags)

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
        if file.lock is not None:
            lock = self.system.ftrace.ftrace_lock if file.lock == "ftrace_lock" else self.trace_types_lock
            yield from lock.acquire()
            try:
                return reader()
            finally:
                lock.release()
        self._touch(("trace",), write=name.endswith("trace_pipe"))
        self.system.ftrace.touch_disabled()
        return reader()

    def _touch(self, token: object, write: bool) -> None:
        tracker = self.system.kernel.machine.tracker
        if tracker is not None:
            tracker.touch(token, write)

    # -- current_tracer, tracing_on, trace ----------------------------------------------------
    def _write_current_tracer(self, data: bytes) -> Iterator[object]:
        """tracing_set_trace_write(): trailing whitespace stripped, then tracing_set_tracer()."""
        name = data.decode("latin-1").rstrip()
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
            self._reset_buffer()  # tracer_init() resets the buffers
            yield from self._tracer_start(name)
            self.current_tracer = name
        finally:
            self.trace_types_lock.release()

    def _tracer_start(self, name: str) -> Iterator[object]:
        """function: global_ops calls function_trace_call; function_trace_init() ignores what
        register_ftrace_function() returns, so on a dead ftrace the write still succeeds.
        function_graph: global_ops calls the stub and ftrace_graph_call jumps to the graph
        caller; graph_trace_init() fails with register_ftrace_graph()'s error."""
        s = self.system
        if name == "nop":
            return
        graph = name == "function_graph"
        if graph and s.graph.entry_handler is not None:  # register_ftrace_graph(): one graph user
            raise TracefsError("current_tracer: function_graph: the function graph is in use (by the function "
                               "profiler: echo 0 > function_profile_enabled)", errno.EBUSY)
        # function_trace_init(): function_stack_trace_call when func_stack_trace is set
        s.configure_global_ops(graph, stack_trace=not graph and self.options.tracer_on("function", "func_stack_trace"))
        self.buffers.record_cmdlines(True)  # tracing_start_cmdline_record()
        ret = yield from s.ftrace.register_ftrace_function(s.global_ops, FTRACE_START_FUNC_RET if graph else 0)
        if ret and graph:
            self.buffers.record_cmdlines(False)
            raise self._errno_error("current_tracer", ret)
        s.graph.active = graph and not ret

    def _tracer_stop(self, name: str) -> Iterator[object]:
        """The tracer's reset: unregistering's error is ignored by both tracers."""
        s = self.system
        if name == "nop":
            return
        graph = name == "function_graph"
        yield from s.ftrace.unregister_ftrace_function(s.global_ops, FTRACE_STOP_FUNC_RET if graph else 0)
        self.buffers.record_cmdlines(False)  # tracing_stop_cmdline_record()
        s.graph.active = False

    def _write_tracing_on(self, data: bytes) -> Iterator[object]:
        """rb_simple_write(): any unsigned number; non-zero turns the ring buffer on and calls
        the tracer's start (the function tracer's empties the buffers), zero turns it off."""
        value = kstrtoul("tracing_on", data)
        yield from self.trace_types_lock.acquire()
        try:
            self._touch(("trace",), write=True)
            self.system.set_tracing_on(bool(value))
            if value and self.current_tracer == "function":
                self._reset_buffer()  # function_trace_start(): tracing_reset_online_cpus()
        finally:
            self.trace_types_lock.release()

    def _write_trace(self, data: bytes) -> Iterator[object]:
        """tracing_write_stub(): writes are taken and ignored (O_TRUNC at open cleared it)."""
        yield from ()

    def print_trace(self, entries: list, head: Header | None, lost: list[int], time_start: int = 0) -> str:
        """Events as the current tracer prints them under the trace options (head None: no
        header, as trace_pipe): the function event with seq_print_ip_sym() (bare names),
        function_graph with %ps (" [mod]")."""
        s = self.system
        fmt = self.options.format()
        if self.current_tracer == "function_graph":
            lines = format_graph(entries, s.env, len(s.kernel.cpus), head, fmt)
            if head is None:
                lines = "".join(format_lost(cpu, n) for cpu, n in enumerate(lost) if n) + lines
            return lines
        text = trace_header(head, fmt) if head is not None else ""
        return text + format_entries(entries, s.env, lost, fmt, time_start)

    def trace_text(self, cpu: int | None = None) -> str:
        """`trace` (or per_cpu/cpuN/trace): the header counts every CPU's events; the
        non-consuming iterator prints no LOST lines (v4.4-v4.8 trace.c peek_next_entry() asks
        for lost events only when consuming)."""
        s = self.system
        head = buffer_header(self.current_tracer, s.buffer, len(s.kernel.cpus), s.ftrace.ftrace_disabled,
                             s.tree.uname)
        return self.print_trace(s.buffer.entries(cpu), head, [0] * len(s.kernel.cpus), s.buffer.time_start)

    def trace_pipe_text(self, cpu: int | None = None) -> str:
        """trace_pipe (or per_cpu/cpuN/trace_pipe): the events consumed, no header; lost
        events said first."""
        entries, lost = self.system.buffer.consume(cpu)
        return self.print_trace(entries, None, lost, self.system.buffer.time_start)

    def _reset_buffer(self) -> None:
        """tracing_reset_online_cpus(): the buffers emptied, their start time now."""
        s = self.system
        self._touch(("trace",), write=True)
        s.buffer.reset()
        s.buffer.time_start = s.buffer.now(s.kernel.cpus[s.kernel.current_cpu])

    def _write_max_graph_depth(self, data: bytes) -> Iterator[object]:
        """graph_depth_write(): a decimal unsigned long, kept in an int (printed with %d)."""
        value = kstrtoul("max_graph_depth", data) & 0xFFFFFFFF
        self.system.graph.max_depth = value - (1 << 32) if value >> 31 else value
        yield from ()

    def _write_tracing_cpumask(self, data: bytes) -> Iterator[object]:
        """tracing_cpumask_write(): cpumask_parse_user() (bitmap_parse: comma-separated
        32-bit hex chunks, -EINVAL for anything else, -EOVERFLOW past NR_CPUS, 64 in
        x86_64's defconfig), then recording is switched off on each CPU leaving the mask
        and on for each CPU joining it."""
        text = data.decode("latin-1").rstrip("\n\t ")
        value = 0
        for chunk in text.split(",") if text else []:
            if not chunk or len(chunk) > 8 or any(c not in "0123456789abcdefABCDEF" for c in chunk):
                raise TracefsError(f"tracing_cpumask: {text!r} is not a hex CPU mask", errno.EINVAL)
            value = (value << 32) | int(chunk, 16)
        if value >> 64:
            raise TracefsError(f"tracing_cpumask: {text!r} names CPUs past NR_CPUS (64)", errno.EOVERFLOW)
        self._touch(("trace",), write=True)
        self.system.buffer.set_recording_cpus({c for c in range(len(self.system.kernel.cpus)) if value >> c & 1})
        yield from ()

    def _readme(self) -> str:
        """README: the kernel's is a mini-HOWTO of its files (tools such as ftracetest grep it
        for the features a kernel has); this one, in this project's words, names the files
        this tracefs serves, one a line, so the same greps find exactly those."""
        lines = ["tracing mini-HOWTO (ftrace-emu): the files of this tracefs", ""]
        lines += [f"  {name}" for name in self.files if name != "README"]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _read_trace_marker() -> str:
        # tracing_mark_fops has no .read: the VFS answers -EINVAL
        raise TracefsError("trace_marker: not readable", errno.EINVAL)

    def _write_trace_marker(self, data: bytes) -> Generator[object, None, int]:
        """tracing_mark_write() (kernel/trace/trace.c, v4.4-v4.8): at most TRACE_BUF_SIZE
        (1024) bytes a write become one print event of the writer's CPU, a newline added
        when missing; with the markers option off the write fails with -EINVAL, with the
        ring buffer off with -EBADF."""
        data = data[:1024]
        s = self.system
        if not self.options.on("markers"):
            raise TracefsError("trace_marker: the markers option is off", errno.EINVAL)
        self._touch(("trace",), write=True)
        if not s.tracer.tracing_on:
            raise TracefsError("trace_marker: the ring buffer is off (tracing_on is 0)", errno.EBADF)
        cpu = s.kernel.cpus[s.kernel.current_cpu]
        text = data.decode("utf-8", "replace")
        if not text.endswith("\n"):
            text += "\n"
        s.buffer.pull()  # the guest recorder's events so far come first
        s.buffer.record(PrintEntry(s.buffer.now(cpu), cpu.index, trace_comm(cpu.task), cpu.task.pid, text))
        yield from ()
        return len(data)

    def _write_events_enable(self, data: bytes) -> Iterator[object]:
        """system_enable_write() (kernel/trace/trace_events.c, v4.8) on events/enable: 0 or 1,
        then __ftrace_set_clr_event() over every event.  This kernel models only the ftrace
        subsystem's events, which cannot be switched (TRACE_EVENT_FL_IGNORE_ENABLE); a real
        v4.8 kernel has others (sched, irq, ...), so 0 ("all off") succeeds as it would
        there, with nothing to switch off, and 1 is -EINVAL: nothing here can be enabled."""
        value = kstrtoul("events/enable", data)
        if value not in (0, 1):
            raise TracefsError(f"events/enable: {value}: expected 0 or 1", errno.EINVAL)
        if value == 1:
            raise TracefsError("events/enable: no event of this kernel can be enabled (its only events are "
                               "ftrace's own)", errno.EINVAL)
        yield from ()

    def _write_set_event(self, data: bytes) -> Generator[object, None, int]:
        """ftrace_event_write() (kernel/trace/trace_events.c, v4.8): one token a write, read
        by a parser of its own each write (EVENT_BUF_SIZE 127), then ftrace_set_clr_event().
        The only events of this kernel are the ftrace subsystem's, which are flagged
        TRACE_EVENT_FL_IGNORE_ENABLE, so no token names one that can be switched: -EINVAL, as
        __ftrace_set_clr_event_nolock() returns when nothing matched.  Opening with O_TRUNC
        (ftrace_clear_events()) has nothing to clear."""
        parser = TraceParser(127 + 1)
        taken = parser.get_user(data)
        if taken < 0:
            raise TracefsError(f"set_event: {data[:40]!r}: token too long", -taken)
        if parser.loaded:
            raise TracefsError(f"set_event: no event matches {parser.token!r} (this kernel's only events are "
                               "ftrace's own, which cannot be enabled)", errno.EINVAL)
        yield from ()
        return taken

    # -- listings ---------------------------------------------------------------------------
    def _read_hash(self, hash_: FtraceHash, notrace: bool) -> str:
        # set_ftrace_filter lists the function probes after the functions (t_hash_show()).
        probes = "" if notrace else self.system.probes.listing()
        if hash_.empty:
            return ("#### no functions disabled ####\n" if notrace else "#### all functions enabled ####\n") + probes
        name = self.system.env.name_ip
        return "".join(f"{name(rec.ip)}\n" for rec in self.system.ftrace.records if rec.ip in hash_) + probes

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
