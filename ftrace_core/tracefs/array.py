"""A trace array's files (struct trace_array: kernel/trace/trace.c init_tracer_tracefs(),
v4.4-v4.8): the tracer, the ring buffer and what reads and steers it.  The top level is one;
each directory made under instances/ is another, with its own buffer, tracer, options,
clock and function filters (instance_mkdir()).

Everything a trace array has lives here or in the pieces it installs (options, clock,
buffers); the tree (ftrace_core.tracefs.Tracefs) only holds the files by path.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Generator, Iterator

from ..errors import FtraceDead, TracefsError
from ..flags import FTRACE_OPS_FL_DYNAMIC, FTRACE_OPS_FL_PID, FTRACE_START_FUNC_RET, FTRACE_STOP_FUNC_RET
from ..kernels import PID_PER_TRACE_ARRAY
from ..hash import FtraceHash
from ..kstr import kstrtoul
from ..ops import FtraceOps
from ..output import Header, buffer_header, format_entries, format_graph, format_lost, trace_header
from ..tracer import PrintEntry, RingBuffer, trace_comm, trace_function
from . import buffers as _buffers, clock as _clock, events as _events, options as _options
from .parser import TraceParser
from .regex import O_TRUNC, ftrace_regex_open_check

if TYPE_CHECKING:
    from . import Tracefs

O_RDONLY = 0
TRACERS = ("function_graph", "function", "nop")
#: The tracers an instance may use (struct tracer's allow_instances: nop's and the function
#: tracer's; function_graph has none).
INSTANCE_TRACERS = ("function", "nop")
FILTER_FILES = {"set_ftrace_filter": True, "set_ftrace_notrace": False}


def nsecs_read(ns: int) -> str:
    """tracing_nsecs_read(): microseconds, %ld; -1 for the (unsigned long)-1 marker."""
    if ns == (1 << 64) - 1:
        return "-1\n"
    usecs = ns // 1000  # nsecs_to_usecs()
    return f"{usecs - (1 << 64) if usecs >> 63 else usecs}\n"


class TraceArray:
    """One trace array: name None for the top level (global_trace, whose buffer, recorders
    and global_ops the System owns), else an instance with its own."""

    def __init__(self, tree: "Tracefs", name: str | None = None, copy_flags: set[str] | None = None):
        self.tree = tree
        self.system = system = tree.system
        self.name = name
        self.prefix = "" if name is None else f"instances/{name}/"
        self.trace_types_lock = tree.trace_types_lock
        self.current_tracer = "nop"
        self.refs = 0  # open files (trace_array_get()): rmdir is refused while any is open
        self.max_latency = 0  # tr->max_latency, ns: no latency tracer here sets it
        if name is None:
            self.buffer = system.buffer
            self.ops = system.global_ops
        else:
            self.buffer = RingBuffer(len(system.kernel.cpus), system.buffer.entries_per_cpu)
            # allocate_ftrace_ops(): function_trace_call for this array; kzalloc'd, so
            # __register_ftrace_function() makes it DYNAMIC and it is always called through
            # ftrace_ops_list_func (ftrace_ops_get_list_func())
            self.ops = FtraceOps(f"instance {name}", system.kernel.symbol("function_trace_call"),
                                 flags=FTRACE_OPS_FL_DYNAMIC, handler=self._function_trace_call)
            self._on = True
        self.tracers = TRACERS if name is None else INSTANCE_TRACERS
        add = self.add
        add("current_tracer", lambda: self.current_tracer + "\n", self._write_current_tracer, lock="trace_types_lock",
            mode=0o644)
        add("available_tracers", lambda: " ".join(self.tracers) + "\n", mode=0o444)
        add("tracing_on", lambda: ("1" if self.tracing_on else "0") + "\n", self._write_tracing_on, mode=0o644)
        for file, enable in FILTER_FILES.items():
            hash_ = "filter_hash" if enable else "notrace_hash"
            add(file, lambda h=hash_, n=not enable: self._read_hash(getattr(self.ops, h), notrace=n),
                opener=self._open_filter, lock="ftrace_lock", mode=0o644)
        add("trace", self.trace_text, self._write_trace, opener=self._open_trace, mode=0o644)
        add("trace_pipe", self.trace_pipe_text, mode=0o444)
        add("set_event", lambda: "", self._write_set_event, mode=0o644)  # no event can be enabled
        # system_enable_read(): the ftrace events count (they have a ->reg) and none is on
        add("events/enable", lambda: "0\n", self._write_events_enable, mode=0o644)
        add("trace_marker", self._read_trace_marker, self._write_trace_marker, mode=0o220)
        # tracing_cpumask_read(): "%*pb", the mask's nr_cpu_ids bits in hex
        add("tracing_cpumask", lambda: f"{sum(1 << c for c in self.buffer.recording_cpus):x}\n",
            self._write_tracing_cpumask, mode=0o644)
        self.clock = _clock.install(self)
        self.options = _options.install(self, copy_flags)
        self.buffers = _buffers.install(self)
        _events.install(self)  # the ring buffer's binary format: events/, trace_pipe_raw
        self.pids = None
        if name is not None and system.ftrace.kernel.has(PID_PER_TRACE_ARRAY):
            # ftrace_init_tracefs(tr, ...) (v4.7 on): set_ftrace_pid in every trace array, for
            # its own ops (FTRACE_OPS_FL_PID, ops->private = the array)
            from ..pid import FunctionPids  # ftrace_core.pid reads its files with tracefs's parser
            from . import pid as _pid_file

            self.pids = FunctionPids(system)
            self.ops.flags |= FTRACE_OPS_FL_PID
            self.ops.private = self.pids
            _pid_file.install(self, self.pids)
        add("buffer_size_kb", self.buffers.buffer_size_kb, self.buffers.write_buffer_size_kb, mode=0o644)
        add("tracing_max_latency", lambda: nsecs_read(self.max_latency), self._write_max_latency, mode=0o644)

    def add(self, name: str, read, write=None, opener=None, lock: str | None = None, mode: int | None = None) -> None:
        """A file of this array, at its path in the tree."""
        self.tree.add(self.prefix + name, read, write, opener, lock, mode)

    def file(self, path: str) -> str:
        """A path of the tree without this array's prefix."""
        return path[len(self.prefix):]

    def _touch(self, token: object, write: bool) -> None:
        self.tree._touch(token, write)

    # -- the ring buffer's switch (tracer_tracing_on()/off()) ----------------------------------
    @property
    def tracing_on(self) -> bool:
        return self.system.tracer.tracing_on if self.name is None else self._on

    def set_tracing_on(self, on: bool) -> None:
        if self.name is None:
            self.system.set_tracing_on(on)
        else:
            self._on = on

    def _function_trace_call(self, ip: int, parent_ip: int, cpu) -> None:
        """function_trace_call() for an instance's ops: an event into this array's buffer."""
        if self._on:
            trace_function(self.buffer, cpu, ip, parent_ip)

    # -- current_tracer -----------------------------------------------------------------------
    def _write_current_tracer(self, data: bytes) -> Iterator[object]:
        """tracing_set_trace_write(): trailing whitespace stripped, then tracing_set_tracer()
        (an instance takes only tracers with allow_instances: -EINVAL for the others)."""
        name = data.decode("latin-1").rstrip()
        if name not in self.tracers:
            raise TracefsError(f"{self.prefix}current_tracer: no tracer named {name!r} (available: "
                               f"{' '.join(self.tracers)})", errno.EINVAL)
        yield from self.trace_types_lock.acquire()  # tracing_set_tracer() holds it
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
        """function: the array's ops calls function_trace_call; function_trace_init() ignores
        what register_ftrace_function() returns, so on a dead ftrace the write still succeeds.
        function_graph (top level only): global_ops calls the stub and ftrace_graph_call
        jumps to the graph caller; graph_trace_init() fails with register_ftrace_graph()'s
        error."""
        s = self.system
        if name == "nop":
            return
        graph = name == "function_graph"
        if graph and s.graph.entry_handler is not None:  # register_ftrace_graph(): one graph user
            raise TracefsError("current_tracer: function_graph: the function graph is in use (by the function "
                               "profiler: echo 0 > function_profile_enabled)", errno.EBUSY)
        if self.name is None:
            # function_trace_init(): function_stack_trace_call with func_stack_trace, and only
            # for the top level ("currently only the global instance can do stack tracing")
            s.configure_global_ops(graph, stack_trace=not graph and self.options.tracer_on("function",
                                                                                           "func_stack_trace"))
        self.buffers.record_cmdlines(True)  # tracing_start_cmdline_record()
        ret = yield from s.ftrace.register_ftrace_function(self.ops, FTRACE_START_FUNC_RET if graph else 0)
        if ret and graph:
            self.buffers.record_cmdlines(False)
            raise self._errno_error("current_tracer", ret)
        if graph:
            s.graph.active = not ret
            s.graph.thresh_ns = self.tree.thresh_ns  # graph_trace_init(): the thresh callbacks?

    def _tracer_stop(self, name: str) -> Iterator[object]:
        """The tracer's reset: unregistering's error is ignored by both tracers."""
        s = self.system
        if name == "nop":
            return
        graph = name == "function_graph"
        yield from s.ftrace.unregister_ftrace_function(self.ops, FTRACE_STOP_FUNC_RET if graph else 0)
        self.buffers.record_cmdlines(False)  # tracing_stop_cmdline_record()
        if graph:
            s.graph.active = False

    def set_nop(self) -> Iterator[object]:
        """tracing_set_nop(): the tracer stopped (instance_rmdir()), and its pids cleared
        (ftrace_clear_pids())."""
        yield from self._tracer_stop(self.current_tracer)
        self.current_tracer = "nop"
        if self.pids is not None:
            self.pids.clear_ftrace_pids()

    # -- tracing_on, trace, trace_pipe --------------------------------------------------------
    def _write_tracing_on(self, data: bytes) -> Iterator[object]:
        """rb_simple_write(): any unsigned number; non-zero turns the ring buffer on and calls
        the tracer's start (the function tracer's empties the buffers), zero turns it off."""
        value = kstrtoul(self.prefix + "tracing_on", data)
        yield from self.trace_types_lock.acquire()
        try:
            self._touch(("trace",), write=True)
            self.set_tracing_on(bool(value))
            if value and self.current_tracer == "function":
                self._reset_buffer()  # function_trace_start(): tracing_reset_online_cpus()
        finally:
            self.trace_types_lock.release()

    def _write_trace(self, data: bytes) -> Iterator[object]:
        """tracing_write_stub(): writes are taken and ignored (O_TRUNC at open cleared it)."""
        yield from ()

    def _open_trace(self, name: str, flags: int, cpu: int | None = None) -> Generator[object, None, object]:
        from . import SimpleHandle

        if (flags & 3) != O_RDONLY and flags & O_TRUNC:
            # tracing_open(): opening `trace` for writing with O_TRUNC empties the buffers
            # (per_cpu/cpuN/trace: that CPU's, tracing_reset()).
            if cpu is None:
                self._reset_buffer()
            else:
                self._touch(("trace",), write=True)
                self.buffer.reset(cpu)
        yield from ()
        return SimpleHandle(self.tree, name, flags)

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
        head = buffer_header(self.current_tracer, self.buffer, len(s.kernel.cpus), s.ftrace.ftrace_disabled,
                             s.tree.uname)
        return self.print_trace(self.buffer.entries(cpu), head, [0] * len(s.kernel.cpus), self.buffer.time_start)

    def trace_pipe_text(self, cpu: int | None = None) -> str:
        """trace_pipe (or per_cpu/cpuN/trace_pipe): the events consumed, no header; lost
        events said first."""
        entries, lost = self.buffer.consume(cpu)
        return self.print_trace(entries, None, lost, self.buffer.time_start)

    def _reset_buffer(self) -> None:
        """tracing_reset_online_cpus(): the buffers emptied, their start time now."""
        s = self.system
        self._touch(("trace",), write=True)
        self.buffer.reset()
        self.buffer.time_start = self.buffer.now(s.kernel.cpus[s.kernel.current_cpu])

    # -- set_ftrace_filter, set_ftrace_notrace (ftrace_create_filter_files()) ------------------
    def _open_filter(self, name: str, flags: int) -> Generator[object, None, object]:
        from . import FilterHandle

        ftrace_regex_open_check(self.system, name)
        yield from ()
        return FilterHandle(self.tree, name, FILTER_FILES[self.file(name)], flags, self.ops)

    def _read_hash(self, hash_: FtraceHash, notrace: bool) -> str:
        """t_show(): set_ftrace_filter (opened with FTRACE_ITER_DO_HASH, in every array) lists
        the function probes after the functions."""
        return self.tree.read_hash(hash_, notrace, probes=not notrace)

    # -- tracing_cpumask, trace_marker --------------------------------------------------------
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
        self.buffer.set_recording_cpus({c for c in range(len(self.system.kernel.cpus)) if value >> c & 1})
        yield from ()

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
        if not self.tracing_on:
            raise TracefsError("trace_marker: the ring buffer is off (tracing_on is 0)", errno.EBADF)
        cpu = s.kernel.cpus[s.kernel.current_cpu]
        text = data.decode("utf-8", "replace")
        if not text.endswith("\n"):
            text += "\n"
        self.buffer.pull()  # the guest recorder's events so far come first
        self.buffer.record(PrintEntry(self.buffer.now(cpu), cpu.index, trace_comm(cpu.task), cpu.task.pid, text))
        yield from ()
        return len(data)

    # -- set_event, events/enable -------------------------------------------------------------
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

    def _write_max_latency(self, data: bytes) -> Iterator[object]:
        """tracing_max_lat_write(): tracing_nsecs_write(), microseconds kept as ns."""
        self.max_latency = kstrtoul(self.prefix + "tracing_max_latency", data) * 1000 & ((1 << 64) - 1)
        yield from ()

    @staticmethod
    def _errno_error(file: str, ret: int) -> TracefsError:
        if ret == -errno.ENODEV:
            return FtraceDead(file)
        return TracefsError(f"{file}: failed with {-ret} ({errno.errorcode.get(-ret, '?')})", -ret)

