"""trace_clock: which clock stamps the ring buffer's events (kernel/trace/trace.c
trace_clocks[], tracing_clock_show(), tracing_set_clock(); the same list in v4.4-v4.8), each
given its meaning over the emulated machine's clocks (emu.clock: a CPU's clock is the
instructions it has run, at 1 GHz):

  local, perf        the CPU's own clock (trace_clock_local, trace_clock: sched_clock)
  global             the CPU's clock, but never behind the last value any CPU was given:
                     one later than it when behind (trace_clock_global)
  mono, mono_raw     the CPU's clock, never behind the last value given (ktime's fast
                     accessors: one machine-wide monotonic time)
  counter            an event counter shared by the CPUs (trace_clock_counter); not in ns
  uptime             the guest's jiffies since boot in USER_HZ ticks (trace_clock_jiffies)
  x86-tsc            the CPU's cycle count (rdtsc): at 1 GHz and one instruction a cycle,
                     the local clock's number, shown raw; not in ns

Event times use the chosen clock; function_graph durations do not (the kernel stamps
calltime and rettime with trace_clock_local()).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Iterator

from ..errors import TracefsError

if TYPE_CHECKING:
    from .array import TraceArray

#: trace_clocks[]: name and whether it counts nanoseconds (in_ns), with x86's ARCH_TRACE_CLOCKS.
TRACE_CLOCKS = (("local", True), ("global", True), ("counter", False), ("uptime", False), ("perf", True),
                ("mono", True), ("mono_raw", True), ("x86-tsc", False))
#: Clocks the in-guest recorder can give: it stamps each event with its CPU's own clock.
_PER_CPU = ("local", "perf", "x86-tsc")
HZ, USER_HZ = 250, 100  # guest/include/kernel.h; the x86 ABI's USER_HZ
TICK_NSEC = 1_000_000_000 // HZ
INITIAL_JIFFIES = (-300 * HZ) & 0xFFFFFFFF  # guest/kernel/sched.c, as the kernel's


class TraceClock:
    """The trace array's clock_id and the stamp function it gives the ring buffer."""

    def __init__(self, array: "TraceArray"):
        self.array = array
        self.name = "local"
        self._prev = 0  # trace_clock_struct.prev_time (global), and mono's last value
        self._counter = 0

    @property
    def in_ns(self) -> bool:
        return dict(TRACE_CLOCKS)[self.name]

    def show(self) -> str:
        """tracing_clock_show(): the clocks on one line, the current one in brackets."""
        return " ".join(f"[{name}]" if name == self.name else name for name, _ in TRACE_CLOCKS) + "\n"

    def write(self, data: bytes) -> Iterator[object]:
        """tracing_clock_write(): under 64 bytes, stripped; then tracing_set_clock()."""
        if len(data) >= 64:
            raise TracefsError("trace_clock: a write takes at most 63 bytes", errno.EINVAL)
        yield from self.set(data.decode("latin-1").strip())

    def set(self, name: str) -> Iterator[object]:
        """tracing_set_clock(): an unknown name is -EINVAL; a new clock empties the buffers
        (its times would not compare with the old ones)."""
        if name not in dict(TRACE_CLOCKS):
            raise TracefsError(f"trace_clock: no clock {name!r} (have: {' '.join(n for n, _ in TRACE_CLOCKS)})",
                               errno.EINVAL)
        system = self.array.system
        if self.array.name is None and system.tracer.guest is not None and name not in _PER_CPU:
            raise TracefsError(f"trace_clock: the in-guest recorder stamps events with each CPU's own clock "
                               f"({', '.join(_PER_CPU)}); {name} needs the hook recorder", errno.EINVAL)
        yield from self.array.trace_types_lock.acquire()
        try:
            self.name = name
            self._prev = self._counter = 0
            buffer = self.array.buffer
            buffer.stamp = self._stamp_for(name)
            self.array._reset_buffer()
        finally:
            self.array.trace_types_lock.release()

    def _stamp_for(self, name: str) -> Callable[[int, int], int] | None:
        """(cpu, the CPU's clock in ns) -> the event's time; None: the CPU's clock as is."""
        if name in _PER_CPU:
            return None
        if name == "global":
            return self._global
        if name in ("mono", "mono_raw"):
            return self._mono
        if name == "counter":
            return self._count
        return self._uptime

    def _global(self, cpu: int, now: int) -> int:
        if now < self._prev:
            now = self._prev + 1
        self._prev = now
        return now

    def _mono(self, cpu: int, now: int) -> int:
        self._prev = max(self._prev, now)
        return self._prev

    def _count(self, cpu: int, now: int) -> int:
        self._counter += 1
        return self._counter

    def _uptime(self, cpu: int, now: int) -> int:
        """trace_clock_jiffies(): jiffies_64_to_clock_t(jiffies_64 - INITIAL_JIFFIES)."""
        kernel = self.array.system.kernel
        jiffies = int.from_bytes(kernel.machine.read(kernel.symbol("jiffies"), 8), "little")
        return ((jiffies - INITIAL_JIFFIES) & (1 << 64) - 1) * TICK_NSEC // (1_000_000_000 // USER_HZ)


def install(array: "TraceArray") -> TraceClock:
    clock = TraceClock(array)
    array.add("trace_clock", clock.show, clock.write, mode=0o644)
    return clock
