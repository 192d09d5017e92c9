"""The ring buffer's files beyond `trace`: the snapshot, per_cpu/cpuN/, the sizes,
free_buffer, saved_cmdlines and dyn_ftrace_total_info (kernel/trace/trace.c,
v4.4-v4.8: tracing_snapshot_write(), print_snapshot_help(), tracing_init_tracefs_percpu(),
tracing_stats_read(), tracing_entries_read/write(), tracing_total_entries_read(),
tracing_free_buffer_release(), saved_cmdlines_show(), tracing_read_dyn_info()).

The snapshot is the kernel's max_buffer: `echo 1 > snapshot` trades its contents with the
live buffer's (update_max_tr()); per-CPU swaps need CONFIG_TRACER_SNAPSHOT_PER_CPU_SWAP,
which x86's defconfig leaves off, so per_cpu/cpuN/snapshot only clears.
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from typing import TYPE_CHECKING, Generator, Iterator

from ..errors import TracefsError
from ..output import Header
from ..output.text import tracer_banner
from ..tracer import ENTRY_BYTES, RingBuffer

if TYPE_CHECKING:
    from .array import TraceArray

SNAPSHOT_MAIN_HELP = (
    "# echo 0 > snapshot : Clears and frees snapshot buffer\n"
    "# echo 1 > snapshot : Allocates snapshot buffer, if not already allocated.\n"
    "#                      Takes a snapshot of the main buffer.\n"
    "# echo 2 > snapshot : Clears snapshot buffer (but does not allocate or free)\n"
    "#                      (Doesn't have to be '2' works with any number that\n"
    "#                       is not a '0' or '1')\n"
)
SNAPSHOT_PERCPU_HELP = (
    "# echo 0 > snapshot : Invalid for per_cpu snapshot file.\n"
    "# echo 1 > snapshot : Not supported with this kernel.\n"
    "#                     Must use main snapshot file to allocate.\n"
    "# echo 2 > snapshot : Clears this cpu's snapshot buffer (but does not allocate)\n"
    "#                      (Doesn't have to be '2' works with any number that\n"
    "#                       is not a '0' or '1')\n"
)
#: saved_cmdlines_size: SAVED_CMDLINES_DEFAULT, and the most tracing_resize_saved_cmdlines() takes.
SAVED_CMDLINES_DEFAULT = 128
PID_MAX_DEFAULT = 32768
_PER_CPU = tuple(f"per_cpu/cpu{cpu}/{name}" for cpu in (0, 1) for name in ("trace", "buffer_size_kb", "snapshot"))
#: The files, for checking names before anything runs (the two CPUs' per_cpu/ included).
WRITABLE = ("snapshot", "saved_cmdlines_size", "free_buffer", *_PER_CPU)
READABLE = ("snapshot", "buffer_total_size_kb", "saved_cmdlines", "saved_cmdlines_size", "dyn_ftrace_total_info",
            "free_buffer", *_PER_CPU, *(f"per_cpu/cpu{cpu}/{name}" for cpu in (0, 1) for name in ("trace_pipe", "stats")))


class SavedCmdlines:
    """The pid -> comm map trace_save_cmdline() keeps: a fixed number of slots, reused
    round-robin when a new pid comes; a comm is saved at a task switch on a CPU that
    recorded an event since the last save (trace_cmdline_save), for the task switched out
    (tracing_record_cmdline() from the sched_switch probe)."""

    def __init__(self, size: int = SAVED_CMDLINES_DEFAULT):
        self.size = size
        self.slots: OrderedDict[int, str] = OrderedDict()  # pid -> comm, in slot order

    def save(self, pid: int, comm: str) -> None:
        if pid == 0:  # the idle task is never saved (trace_find_cmdline() names it <idle>)
            return
        if pid not in self.slots and len(self.slots) >= self.size:
            self.slots.popitem(last=False)
        self.slots[pid] = comm[:15]

    def resize(self, size: int) -> None:
        """tracing_resize_saved_cmdlines(): a new, empty map."""
        self.size = size
        self.slots = OrderedDict()

    def show(self) -> str:
        return "".join(f"{pid} {comm}\n" for pid, comm in self.slots.items())


class Buffers:
    """The snapshot buffer, the per-CPU files and the sizes of one trace array."""

    def __init__(self, array: "TraceArray"):
        self.array = array
        self.system = array.system
        self.snapshot = RingBuffer(len(self.system.kernel.cpus), 1)
        self.allocated_snapshot = False
        # savedcmd is the kernel's one map, which every trace array's events fill
        self.cmdlines = SavedCmdlines() if array.name is None else array.tree.top.buffers.cmdlines
        self._saved_at = [0] * len(self.system.kernel.cpus)  # events written at the last save

    # -- the snapshot (update_max_tr(), alloc_snapshot(), free_snapshot()) ------------------------
    def alloc_snapshot(self) -> int:
        """alloc_snapshot(): the snapshot buffer takes the live buffer's size."""
        if not self.allocated_snapshot:
            self.snapshot = RingBuffer(len(self.system.kernel.cpus), 1)
            for cpu, size in enumerate(self.array.buffer.sizes):
                self.snapshot.resize(size, cpu)
            self.allocated_snapshot = True
        return 0

    def free_snapshot(self) -> None:
        self.snapshot = RingBuffer(len(self.system.kernel.cpus), 1)
        self.allocated_snapshot = False

    def take_snapshot(self) -> None:
        """update_max_tr(): the live buffer's events go to the snapshot, and the live buffer
        carries on in what the snapshot held."""
        self.array.buffer.swap(self.snapshot)

    def tracing_snapshot(self, cpu=None) -> None:
        """tracing_snapshot() (the snapshot probe command): the swap; with no snapshot
        allocated the kernel stops tracing instead (after two warning lines in the trace,
        which this port does not write)."""
        if not self.allocated_snapshot:
            self.array.set_tracing_on(False)
            return
        self.take_snapshot()

    def write_snapshot(self, data: bytes, cpu: int | None = None) -> Iterator[object]:
        """tracing_snapshot_write(): 0 frees (all CPUs only), 1 allocates and swaps (all CPUs
        only: no per-CPU swap in this configuration), any other number clears."""
        from . import kstrtoul

        name = "snapshot" if cpu is None else f"per_cpu/cpu{cpu}/snapshot"
        value = kstrtoul(name, data)
        yield from self.array.trace_types_lock.acquire()
        try:
            self.array._touch(("trace",), write=True)
            if value == 0:
                if cpu is not None:
                    raise TracefsError(f"{name}: 0 is for the main snapshot file", errno.EINVAL)
                if self.allocated_snapshot:
                    self.free_snapshot()
            elif value == 1:
                if cpu is not None:
                    raise TracefsError(f"{name}: a per-CPU swap needs CONFIG_TRACER_SNAPSHOT_PER_CPU_SWAP",
                                       errno.EINVAL)
                self.alloc_snapshot()
                self.take_snapshot()
            elif self.allocated_snapshot:
                self.snapshot.reset(cpu)
        finally:
            self.array.trace_types_lock.release()

    def read_snapshot(self, cpu: int | None = None) -> str:
        """The snapshot as `trace` prints the live buffer; when empty, print_snapshot_help()."""
        s = self.system
        array = self.array
        head = Header(array.current_tracer, self.snapshot.entries_in_buffer, self.snapshot.entries_written,
                      len(s.kernel.cpus), s.ftrace.ftrace_disabled, s.tree.uname)
        entries = self.snapshot.entries(cpu)
        if not entries:
            state = "allocated" if self.allocated_snapshot else "freed"
            return (tracer_banner(head) + f"#\n# * Snapshot is {state} *\n#\n# Snapshot commands:\n"
                    + (SNAPSHOT_MAIN_HELP if cpu is None else SNAPSHOT_PERCPU_HELP))
        return array.print_trace(entries, head, [0] * len(s.kernel.cpus), self.snapshot.time_start)

    # -- per_cpu/cpuN/ ------------------------------------------------------------------------
    def stats(self, cpu: int) -> str:
        """tracing_stats_read(): the CPU buffer's counters; times as the clock counts them."""
        buffer = self.array.buffer
        held = buffer.entries(cpu)
        oldest = held[0].ts if held else 0
        now = buffer.now(self.system.kernel.cpus[cpu])
        if self.array.clock.in_ns:
            def show(ts: int) -> str:
                return f"{ts // 1_000_000_000:5d}.{ts % 1_000_000_000 // 1000:06d}"
        else:
            def show(ts: int) -> str:
                return str(ts)
        return (f"entries: {len(held)}\noverrun: {buffer.overrun[cpu]}\ncommit overrun: 0\n"
                f"bytes: {len(held) * ENTRY_BYTES}\noldest event ts: {show(oldest)}\nnow ts: {show(now)}\n"
                f"dropped events: {buffer.dropped[cpu]}\nread events: {buffer.read[cpu]}\n")

    def buffer_size_kb(self, cpu: int | None = None) -> str:
        """tracing_entries_read(): the size in KB, or X when the CPUs' sizes differ."""
        sizes = [size * ENTRY_BYTES // 1024 for size in self.array.buffer.sizes]
        if cpu is not None:
            return f"{sizes[cpu]}\n"
        return f"{sizes[0]}\n" if len(set(sizes)) == 1 else "X\n"

    def buffer_total_size_kb(self) -> str:
        """tracing_total_entries_read(): the CPUs' sizes added."""
        return f"{sum(size * ENTRY_BYTES // 1024 for size in self.array.buffer.sizes)}\n"

    def write_buffer_size_kb(self, data: bytes, cpu: int | None = None) -> Iterator[object]:
        """tracing_entries_write(): KB per CPU, at least 1 (the snapshot follows when
        allocated, as tracing_resize_ring_buffer() resizes max_buffer too)."""
        from . import MAX_BUFFER_KB, kstrtoul

        name = "buffer_size_kb" if cpu is None else f"per_cpu/cpu{cpu}/buffer_size_kb"
        value = kstrtoul(name, data)
        if value == 0:
            raise TracefsError(f"{name}: must be at least 1", errno.EINVAL)
        if value > MAX_BUFFER_KB:
            raise TracefsError(f"{name}: {value}: this machine keeps at most {MAX_BUFFER_KB} KB a CPU",
                               errno.ENOMEM)
        entries = max(1, value * 1024 // ENTRY_BYTES)
        self.array._touch(("trace",), write=True)
        self.array.buffer.resize(entries, cpu)
        if self.allocated_snapshot:
            self.snapshot.resize(entries, cpu)
        yield from ()

    def release_free_buffer(self) -> None:
        """tracing_free_buffer_release(): tracing off with disable_on_free, then the buffer
        shrinks to its least (one entry a CPU here)."""
        if self.array.options.on("disable_on_free"):
            self.array.set_tracing_on(False)
        self.array._touch(("trace",), write=True)
        self.array.buffer.resize(1)

    # -- saved_cmdlines ------------------------------------------------------------------------
    def record_cmdlines(self, on: bool) -> None:
        """tracing_start_cmdline_record() / tracing_stop_cmdline_record(): the function
        tracers' init and reset register and unregister the sched_switch probe."""
        for cpu in self.system.kernel.cpus:
            if on and self._on_switch not in cpu.switch_probes:
                cpu.switch_probes.append(self._on_switch)
            elif not on and self._on_switch in cpu.switch_probes:
                cpu.switch_probes.remove(self._on_switch)

    def _on_switch(self, cpu, prev, nxt) -> None:
        """tracing_record_cmdline() from the sched_switch probe: the task switched out is
        saved when its CPU recorded an event since the last save (trace_cmdline_save, set
        by each commit)."""
        written = self.array.buffer.written[cpu.index]
        if written != self._saved_at[cpu.index] and prev.pid != 0:
            self.cmdlines.save(prev.pid, prev.comm)
            self._saved_at[cpu.index] = written

    def write_saved_cmdlines_size(self, data: bytes) -> Iterator[object]:
        """tracing_saved_cmdlines_size_write(): 1 to PID_MAX_DEFAULT, else -EINVAL."""
        from . import kstrtoul

        value = kstrtoul("saved_cmdlines_size", data)
        if not 1 <= value <= PID_MAX_DEFAULT:
            raise TracefsError(f"saved_cmdlines_size: {value}: expected 1 to {PID_MAX_DEFAULT}", errno.EINVAL)
        self.cmdlines.resize(value)
        yield from ()


class _FreeBufferHandle:
    """free_buffer: writes are taken and ignored; the release frees."""

    def __init__(self, buffers: Buffers):
        self.buffers = buffers

    def read_steps(self) -> Generator[object, None, str]:
        raise TracefsError("free_buffer: not readable", errno.EINVAL)
        yield

    def write_steps(self, data: bytes) -> Generator[object, None, int]:
        yield from ()
        return len(data)

    def release_steps(self) -> Generator[object, None, None]:
        self.buffers.release_free_buffer()
        yield from ()


def install(array: "TraceArray") -> Buffers:
    buffers = Buffers(array)
    system = array.system
    add = array.add
    add("snapshot", buffers.read_snapshot, buffers.write_snapshot, mode=0o644)
    add("buffer_total_size_kb", buffers.buffer_total_size_kb, mode=0o444)
    if array.name is None:  # tracer_init_tracefs(): the top level's alone
        add("saved_cmdlines", buffers.cmdlines.show, mode=0o444)
        add("saved_cmdlines_size", lambda: f"{buffers.cmdlines.size}\n", buffers.write_saved_cmdlines_size,
            mode=0o644)
        # ftrace_update_tot_cnt, then ftrace_arch_read_dyn_info()'s nothing (x86 has none)
        add("dyn_ftrace_total_info", lambda: f"{system.ftrace.update_tot_cnt} \n", mode=0o444)

    def open_free_buffer(name: str, flags: int) -> Generator[object, None, object]:
        yield from ()
        return _FreeBufferHandle(buffers)

    add("free_buffer", lambda: "", opener=open_free_buffer, mode=0o200)
    for cpu in range(len(system.kernel.cpus)):
        d = f"per_cpu/cpu{cpu}/"
        add(d + "trace", lambda c=cpu: array.trace_text(c), array._write_trace, mode=0o644,
            opener=lambda name, flags, c=cpu: array._open_trace(name, flags, c))
        add(d + "trace_pipe", lambda c=cpu: array.trace_pipe_text(c), mode=0o444)
        add(d + "stats", lambda c=cpu: buffers.stats(c), mode=0o444)
        # 0444, though root may write it: as tracing_init_tracefs_percpu() creates it
        add(d + "buffer_size_kb", lambda c=cpu: buffers.buffer_size_kb(c),
            lambda data, c=cpu: buffers.write_buffer_size_kb(data, c), mode=0o444)
        add(d + "snapshot", lambda c=cpu: buffers.read_snapshot(c),
            lambda data, c=cpu: buffers.write_snapshot(data, c), mode=0o644)
    return buffers

