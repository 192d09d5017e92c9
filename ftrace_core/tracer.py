"""The function tracer: a hook on the trampoline's callbacks records each traced call into
per-CPU ring buffers, as the kernel's function_trace_call writes ring-buffer events.

ftrace_call in ftrace_caller calls either function_trace_call (one ops registered) or
ftrace_ops_list_func (several); the host hooks both addresses.  The list func hands the call
to every enabled ops whose hashes select the ip, as the kernel's __ftrace_ops_list_func does.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Callable

from unicorn import unicorn_const as uc_const
from unicorn.x86_const import UC_X86_REG_RDI, UC_X86_REG_RDX, UC_X86_REG_RSI

from emu.kernel import Kernel

from .hash import hash_contains_ip
from .update import Ftrace

#: Virtual nanoseconds a recorder charges for each event it writes, on top of the guest
#: instructions the CPU ran (emu.clock): the recorder's own cost, the same for both.
TRACE_EVENT_NS = 100
#: Bytes a function event takes in the kernel's ring buffer (header + ip + parent_ip), which
#: turns buffer_size_kb into a number of entries.
ENTRY_BYTES = 32
DEFAULT_BUFFER_KB = 1408  # the kernel's default per-CPU size
DEFAULT_BUFFER_ENTRIES = DEFAULT_BUFFER_KB * 1024 // ENTRY_BYTES
#: Who records function events: a host hook on each call (exact, what the invariants follow)
#: or the guest itself into per-CPU rings (the kernel's way, ~50x faster; a ring holds a power
#: of two of events, at most 32,768 a CPU).
RECORDERS = ("hook", "guest")
#: Guest functions that are ftrace_ops callbacks done by the host (their ops' handler).
HOST_CALLBACKS = ("function_stack_trace_call", "ftrace_pid_func", "function_trace_probe_call", "stack_trace_call", "function_profile_call")


def trace_comm(task) -> str:
    """The task name a trace shows: the kernel's trace_find_cmdline() prints pid 0 (the idle
    task of every CPU, each named swapper/N) as <idle>."""
    return "<idle>" if task.pid == 0 else task.comm


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One function-tracer event (the kernel's struct ftrace_entry plus its header)."""

    ts: int  # virtual nanoseconds
    cpu: int
    comm: str
    pid: int
    ip: int
    parent_ip: int


@dataclass(frozen=True, slots=True)
class PrintEntry:
    """A print event (struct print_entry): what was written to trace_marker, as
    tracing_mark_write() records it (the text ends in a newline; one is added if missing)."""

    ts: int
    cpu: int
    comm: str
    pid: int
    text: str
    ip: int = 0  # _THIS_IP_ of tracing_mark_write(): printed by name
    parent_ip: int = 0


def trace_function(buffer: "RingBuffer", cpu, ip: int, parent_ip: int) -> None:
    """trace_function(): a function event of cpu's current task into buffer, the recorder's
    cost charged to the CPU's clock."""
    cpu.advance_clock(TRACE_EVENT_NS)
    buffer.record(TraceEntry(buffer.now(cpu), cpu.index, trace_comm(cpu.task), cpu.task.pid, ip, parent_ip))


class RingBuffer:
    """Per-CPU buffers of bounded size; the oldest entries go when one is full (or, with the
    overwrite option off, the new ones)."""

    def __init__(self, nr_cpus: int, entries_per_cpu: int = DEFAULT_BUFFER_ENTRIES):
        if entries_per_cpu < 1:
            raise ValueError("a ring buffer needs room for at least one entry per CPU")
        self.cpus = [deque(maxlen=entries_per_cpu) for _ in range(nr_cpus)]
        self.written = [0] * nr_cpus  # entries ever written, per CPU
        self.overrun = [0] * nr_cpus  # entries overwritten (lost), per CPU
        self.unreported = [0] * nr_cpus  # lost since trace_pipe last said so
        self.read = [0] * nr_cpus  # entries consumed (trace_pipe), per CPU
        self.sources: list = []  # recorders with events still to pull in (GuestRecorder)
        # tracing_cpumask: the CPUs whose buffers take events (ring_buffer_record_disable_cpu)
        self.recording_cpus = set(range(nr_cpus))
        # trace_clock: (cpu, the CPU's clock) -> the event's time; None: the CPU's clock
        self.stamp: "Callable[[int, int], int] | None" = None
        # the overwrite option: a full buffer drops its oldest event (on) or the new one (off)
        self.overwrite = True
        self.dropped = [0] * nr_cpus  # events a full buffer refused (overwrite off)
        self.time_start = 0  # the trace clock's time at the last reset (latency-format's zero)

    @property
    def sizes(self) -> list[int]:
        """Each CPU's size in entries."""
        return [buf.maxlen or 0 for buf in self.cpus]

    @property
    def entries_per_cpu(self) -> int:
        """The largest CPU buffer's size, in entries."""
        return max(self.sizes)

    def now(self, cpu) -> int:
        """The time an event recorded now on cpu gets, by the trace clock."""
        stamp = self.stamp
        return cpu.clock_ns if stamp is None else stamp(cpu.index, cpu.clock_ns)

    def pull(self) -> None:
        for source in self.sources:
            source.drain(self)

    def lose(self, cpu: int, count: int) -> None:
        """Events that never reached this buffer (a recorder's ring wrapped first)."""
        self.written[cpu] += count
        self.overrun[cpu] += count
        self.unreported[cpu] += count

    def set_recording_cpus(self, cpus: set[int]) -> None:
        """tracing_cpumask_write(): what was recorded so far is kept; from now on a CPU
        outside the set writes nothing."""
        self.pull()
        self.recording_cpus = set(cpus)

    def record(self, entry: "TraceEntry | GraphEntry") -> None:
        if entry.cpu not in self.recording_cpus:
            return  # the CPU's buffer has recording disabled: the event is not written
        buf = self.cpus[entry.cpu]
        if len(buf) == buf.maxlen and not self.overwrite:  # producer mode: the new event goes
            self.dropped[entry.cpu] += 1
            return
        if len(buf) == buf.maxlen:  # overwrite mode: the oldest entry goes
            self.overrun[entry.cpu] += 1
            self.unreported[entry.cpu] += 1
        buf.append(entry)
        self.written[entry.cpu] += 1

    def resize(self, entries_per_cpu: int, cpu: int | None = None) -> None:
        """buffer_size_kb (of one CPU, or all): keep the newest entries that fit."""
        if entries_per_cpu < 1:
            raise ValueError("a ring buffer needs room for at least one entry per CPU")
        self.pull()
        for i, buf in enumerate(self.cpus):
            if cpu is not None and i != cpu:
                continue
            dropped = max(0, len(buf) - entries_per_cpu)
            self.overrun[i] += dropped
            self.unreported[i] += dropped
            self.cpus[i] = deque(buf, maxlen=entries_per_cpu)
        for source in self.sources:
            source.resize(self.entries_per_cpu)

    def entries(self, cpu: int | None = None) -> list:
        """The buffered entries (of one CPU, or all merged in time order, ties: lower CPU
        first)."""
        self.pull()
        merged = [e for i, buf in enumerate(self.cpus) if cpu is None or i == cpu for e in buf]
        merged.sort(key=lambda e: (e.ts, e.cpu))
        return merged

    def consume(self, cpu: int | None = None) -> tuple[list, list[int]]:
        """trace_pipe (of one CPU, or all): entries in time order, removed as they are read,
        and per CPU how many were lost since the last read."""
        items = self.entries(cpu)  # pulls
        lost = [n if cpu is None or i == cpu else 0 for i, n in enumerate(self.unreported)]
        for i, buf in enumerate(self.cpus):
            if cpu is None or i == cpu:
                self.read[i] += len(buf)
                buf.clear()
                self.unreported[i] = 0
        return items, lost

    def consume_oldest(self, cpu: int, count: int) -> None:
        """A consuming read took one CPU's oldest count entries (trace_pipe_raw's page):
        they go, and the lost events have been said."""
        buf = self.cpus[cpu]
        for _ in range(min(count, len(buf))):
            buf.popleft()
        self.read[cpu] += count
        self.unreported[cpu] = 0

    def reset(self, cpu: int | None = None) -> None:
        """tracing_reset_online_cpus() (or tracing_reset() of one CPU)."""
        self.pull()  # what was recorded before the reset goes with it
        for i, buf in enumerate(self.cpus):
            if cpu is not None and i != cpu:
                continue
            buf.clear()
            self.written[i] = self.overrun[i] = self.unreported[i] = self.dropped[i] = self.read[i] = 0

    def swap(self, other: "RingBuffer") -> None:
        """update_max_tr(): the two buffers trade what they hold (the snapshot)."""
        self.pull()
        for name in ("cpus", "written", "overrun", "unreported", "read", "dropped"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs)
            setattr(other, name, mine)

    @property
    def entries_in_buffer(self) -> int:
        self.pull()
        return sum(len(b) for b in self.cpus)

    @property
    def entries_written(self) -> int:
        self.pull()
        return sum(self.written)


class FunctionTracer:
    """Turns each traced call into a TraceEntry, by one of two recorders:

    hook   a host hook on function_trace_call records each call as it happens (exact, and
           what the invariants' call audit follows);
    guest  function_trace_call itself writes the event into a per-CPU ring in guest memory,
           which the host drains when the trace is read (the kernel's way, and fast).

    ftrace_ops_list_func (several ops registered) is always hooked: the ops list lives here."""

    def __init__(self, kernel: Kernel, ftrace: Ftrace, buffer: RingBuffer, recorder: str = "hook"):
        if recorder not in RECORDERS:
            raise ValueError(f"unknown recorder {recorder!r}: expected one of {', '.join(RECORDERS)}")
        self.kernel = kernel
        self.ftrace = ftrace
        self.buffer = buffer
        self.recorder = recorder
        self._tracing_on = True
        self.audit = None  # an invariants.CallAudit, told of each recorded entry
        self.bp_listeners: list = []  # told of each int3 met at a site being rewritten
        self._busy = [False] * len(kernel.cpus)
        machine = kernel.machine
        self.direct = kernel.symbol("function_trace_call")
        self.list_func = kernel.symbol("ftrace_ops_list_func")
        # Hooks go in before any of this code is first translated (unicorn-facts.md).
        hooked = (self.direct, self.list_func) if recorder == "hook" else (self.list_func,)
        # The other ops callbacks (guest/kernel/main.c HOST_CALLBACK): ftrace_call may point
        # at any of them when its ops is the only one; the ops' handler does the work.
        hooked += tuple(kernel.symbol(name) for name in HOST_CALLBACKS)
        # The in-guest recorder's code runs only with that recorder: its instructions do not
        # move the clock, every event is charged TRACE_EVENT_NS instead, so both recorders
        # give the same timestamps.
        for name in ("function_trace_call", "trace_ring_full"):
            sym = kernel.kallsyms.get(name)
            machine.clock.uncount(sym.addr, sym.addr + sym.size)
        for addr in hooked:
            machine.hooks.add(uc_const.UC_HOOK_CODE, self._on_callback, begin=addr, end=addr)
        self.guest = GuestRecorder(kernel, buffer) if recorder == "guest" else None
        if self.guest is not None:
            buffer.sources.append(self.guest)
            self.guest.set_recording(True)

    def breakpoint_hit(self, cpu, ip: int) -> None:
        """A CPU met one of ftrace's int3s and was sent past the site: told to the listeners
        (the timeline), never to the ring buffer, which holds only what the kernel's does."""
        for listener in list(self.bp_listeners):
            listener(cpu.index, ip)

    @property
    def tracing_on(self) -> bool:
        return self._tracing_on

    @tracing_on.setter
    def tracing_on(self, on: bool) -> None:
        self._tracing_on = on
        if self.guest is not None:
            self.guest.set_recording(on)

    def _on_callback(self, uc, address: int, size: int, data: object) -> None:
        cpu = self.kernel.machine.running_cpu
        if cpu is None or self._busy[cpu.index]:
            return
        self._busy[cpu.index] = True  # trace recursion protection, per CPU
        try:
            regs = self.kernel.machine.regs
            ip, parent = regs.read(UC_X86_REG_RDI), regs.read(UC_X86_REG_RSI)
            if address == self.list_func:
                for ops in list(self.ftrace.ops_list):
                    if ops.enabled and hash_contains_ip(ip, ops.filter_hash, ops.notrace_hash) and ops.handler:
                        ops.handler(ip, parent, cpu)
            else:
                ops = self.ftrace.function_trace_op
                if ops is not None and ops.handler:
                    ops.handler(ip, parent, cpu)
        finally:
            self._busy[cpu.index] = False

    def function_trace_call(self, ip: int, parent_ip: int, cpu) -> None:
        """The function tracer's own callback: one ring-buffer entry per call."""
        if not self.tracing_on:
            return
        trace_function(self.buffer, cpu, ip, parent_ip)
        if self.audit is not None:
            self.audit.on_traced(cpu.index, ip, parent_ip)


@dataclass(frozen=True, slots=True)
class GraphEntry:
    """A function_graph event: a function's entry, or its return with the entry's time."""

    ts: int
    cpu: int
    comm: str
    pid: int
    func: int
    parent_ip: int
    depth: int
    exit: bool
    calltime: int = 0  # the CPU's clock at entry and return (trace_clock_local(), whatever
    rettime: int = 0   # trace_clock says): a return's duration
    overrun: int = 0  # the task's calls too deep for the return stack so far (trace_overrun)

    @property
    def ip(self) -> int:
        return self.func

    @property
    def duration(self) -> int:
        return self.rettime - self.calltime if self.exit else 0


FTRACE_RETFUNC_DEPTH = 50
_RET_STACK_ENTRY = 16  # struct ftrace_ret_stack {ret, func}


#: FTRACE_GRAPH_MAX_FUNCS (kernel/trace/trace.h): set_graph_function / set_graph_notrace hold
#: at most this many functions each.
FTRACE_GRAPH_MAX_FUNCS = 32


class GraphTracer:
    """The function_graph tracer's host side: ftrace_graph_entry (trace_graph_entry(): the
    verdict, and the entry event) and ftrace_return_to_handler (the exit event) are hooked;
    the per-CPU return stack lives in guest memory (guest/kernel/main.c)."""

    def __init__(self, kernel: Kernel, buffer: RingBuffer):
        self.kernel = kernel
        self.buffer = buffer
        self.tracing_on = True
        self.active = False
        self.audit = None  # an invariants.CallAudit, told of each recorded entry
        # set_graph_function, set_graph_notrace (ftrace_graph_funcs[], ftrace_graph_notrace_funcs[]
        # in kernel/trace/ftrace.c: addresses in the order written) and max_graph_depth.
        self.graph_funcs: list[int] = []
        self.notrace_funcs: list[int] = []
        self.max_depth = 0
        # register_ftrace_graph() by another user (the function profiler): its entry(cpu, func,
        # depth) -> bool and return(cpu, func, calltime, rettime, depth) stand in for
        # trace_graph_entry()/trace_graph_return() while it holds the graph (ftrace_core/tracers/profile.py).
        self.entry_handler = None
        self.return_handler = None
        # ftrace_graph_entry_test(): with other ops registered, whether global_ops' hashes
        # select func (set by the System; None: every function that gets here).
        self.entry_test = None
        # ftrace_trace_task(cpu): set_ftrace_pid's test, which trace_graph_entry() makes first
        # (ftrace_core/pid.py; None: every task).
        self.trace_task = None
        # tracing_thresh in ns when graph_trace_init() chose the thresh callbacks: entries
        # are not recorded, returns only when they took at least this long (0: off)
        self.thresh_ns = 0
        sym = kernel.symbol
        self.ret_stack = sym("ftrace_ret_stack")
        self.curr_ret_stack = sym("ftrace_curr_ret_stack")
        self.verdict = sym("ftrace_graph_verdict")
        self.notrace = sym("ftrace_graph_notrace")
        self._calltimes: list[list[int]] = [[] for _ in kernel.cpus]
        self.overruns: dict[int, int] = {}  # pid -> calls the return stack had no room for
        hooks = kernel.machine.hooks
        for name, callback in (("ftrace_graph_entry", self._on_entry), ("ftrace_return_to_handler", self._on_return)):
            addr = sym(name)
            hooks.add(uc_const.UC_HOOK_CODE, callback, begin=addr, end=addr)

    def _index(self, uc, cpu: int) -> int:
        raw = uc.mem_read(self.curr_ret_stack + 4 * (cpu & 1), 4)
        return int.from_bytes(raw, "little", signed=True)

    def wants(self, func: int, depth: int) -> bool:
        """trace_graph_entry()'s test (kernel/trace/trace_functions_graph.c, v4.4-v4.8):
        trace a call nested in a traced one, or one of set_graph_function's (all, when it
        is empty), within max_graph_depth.  (No task filter and no interrupts here.)"""
        if not (depth or not self.graph_funcs or func in self.graph_funcs) or depth < 0:
            return False
        return not (self.max_depth and depth >= self.max_depth)

    def _on_entry(self, uc, address: int, size: int, data: object) -> None:
        cpu = self.kernel.machine.running_cpu
        if cpu is None:
            return
        func = uc.reg_read(UC_X86_REG_RDI)
        depth = uc.reg_read(UC_X86_REG_RSI)
        depth = depth - (1 << 64) if depth >> 63 else depth
        if self.entry_test is not None and not self.entry_test(func):
            traced = notrace = False
        elif self.entry_handler is not None:
            traced, notrace = self.entry_handler(cpu, func, depth), False
        elif self.thresh_ns:  # trace_graph_thresh_entry(): every call, no test
            traced, notrace = True, False
        else:
            traced = (self.trace_task is None or self.trace_task(cpu)) and self.wants(func, depth)
            # set_graph_notrace: hooked (its return must restore the index) but not recorded
            notrace = traced and func in self.notrace_funcs
        slot = 4 * (cpu.index & 1)
        uc.mem_write(self.verdict + slot, int(traced).to_bytes(4, "little"))
        uc.mem_write(self.notrace + slot, int(notrace).to_bytes(4, "little"))
        if not traced or notrace:
            if self.audit is not None:
                self.audit.on_declined(cpu.index, func, depth)
            return
        if self.entry_handler is not None or self.thresh_ns:  # ftrace_push_return_trace()'s calltime only
            if depth < FTRACE_RETFUNC_DEPTH:
                self._calltimes[cpu.index].append(cpu.clock_ns)
            return
        # The entry is recorded before the push (which may still fail at FTRACE_RETFUNC_DEPTH,
        # leaving an entry without its exit, as the kernel's would).
        parent = uc.reg_read(UC_X86_REG_RDX)
        cpu.advance_clock(TRACE_EVENT_NS)
        if depth < FTRACE_RETFUNC_DEPTH:
            self._calltimes[cpu.index].append(cpu.clock_ns)
        else:  # ftrace_push_return_trace() fails: the task's trace_overrun counts it
            self.overruns[cpu.task.pid] = self.overruns.get(cpu.task.pid, 0) + 1
        if self.tracing_on and self.active:
            self.buffer.record(GraphEntry(self.buffer.now(cpu), cpu.index, trace_comm(cpu.task), cpu.task.pid, func,
                                          parent, depth, False))
            if self.audit is not None:
                self.audit.on_traced(cpu.index, func, parent)

    def _on_return(self, uc, address: int, size: int, data: object) -> None:
        cpu = self.kernel.machine.running_cpu
        if cpu is None:
            return
        index = self._index(uc, cpu.index)
        if index < 0:  # a set_graph_notrace function returns: nothing was recorded for it
            return
        slot = self.ret_stack + ((cpu.index & 1) * FTRACE_RETFUNC_DEPTH + index) * _RET_STACK_ENTRY
        raw = uc.mem_read(slot, _RET_STACK_ENTRY)
        ret, func = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
        calltimes = self._calltimes[cpu.index]
        calltime = calltimes.pop() if calltimes else cpu.clock_ns
        if self.return_handler is not None:
            self.return_handler(cpu, func, calltime, cpu.clock_ns, index)
            return
        if self.thresh_ns and cpu.clock_ns - calltime < self.thresh_ns:
            return  # trace_graph_thresh_return(): too quick to record
        cpu.advance_clock(TRACE_EVENT_NS)
        if self.tracing_on and self.active:
            self.buffer.record(GraphEntry(self.buffer.now(cpu), cpu.index, trace_comm(cpu.task), cpu.task.pid, func,
                                          ret, index, True, calltime, cpu.clock_ns,
                                          self.overruns.get(cpu.task.pid, 0)))


_EVENT = struct.Struct("<QQQq")  # struct trace_event {ip, parent_ip, ts, pid}
_HEAD = struct.Struct("<QQQ")  # struct trace_ring {written, mask, limit}
TRACE_RING_CAPACITY = 32768  # guest/kernel/main.c


class GuestRecorder:
    """The host side of the in-guest recorder: switches it on and off, sizes its rings, and
    drains new events into the RingBuffer (counting those a wrapped ring lost)."""

    def __init__(self, kernel: Kernel, buffer: RingBuffer):
        self.kernel = kernel
        self.heads = kernel.symbol("trace_rings")  # struct trace_ring {written, mask} a CPU
        self.events = kernel.symbol("trace_ring_events")
        self.flag = kernel.symbol("ftrace_guest_recording")
        self.ring_bytes = TRACE_RING_CAPACITY * _EVENT.size
        self.drained = [0] * len(kernel.cpus)
        self.cmdlines: dict[int, str] = {}  # pid -> comm, as the kernel's saved_cmdlines
        self.buffer = buffer
        self.saved: list[deque[bytes]] = [deque() for _ in kernel.cpus]  # raw events taken from full rings
        self.saved_count = [0] * len(kernel.cpus)
        self.slots = 0
        self.resize(buffer.entries_per_cpu)
        # A ring full of unread events calls trace_ring_full(cpu): drain it then, so what is
        # kept is decided by the host's buffer alone, as with the hook recorder.
        full = kernel.symbol("trace_ring_full")
        kernel.machine.hooks.add(uc_const.UC_HOOK_CODE, self._on_full, begin=full, end=full)

    def _on_full(self, uc, address: int, size: int, data: object) -> None:
        self._save(uc.reg_read(UC_X86_REG_RDI) & 1)

    def _save(self, index: int) -> None:
        """Take a ring's unread events as raw bytes (decoded only when the trace is read),
        keeping no more than the host buffer would: older ones count as lost."""
        machine = self.kernel.machine
        for cpu in self.kernel.cpus:
            self.cmdlines[cpu.task.pid] = trace_comm(cpu.task)
        written, mask, _ = _HEAD.unpack(machine.read(self.heads + index * _HEAD.size, _HEAD.size))
        new = written - self.drained[index]
        if new > 0:
            slots = mask + 1
            lost = max(0, new - slots)
            if lost:
                self.buffer.lose(index, lost)
            first = (written - (new - lost)) & mask
            base = self.events + index * self.ring_bytes
            count = new - lost
            head = machine.read(base + first * _EVENT.size, min(count, slots - first) * _EVENT.size)
            tail = machine.read(base, (count - (slots - first)) * _EVENT.size) if count > slots - first else b""
            saved = self.saved[index]
            saved.append(head + tail)
            self.saved_count[index] += count
            cap = self.buffer.sizes[index]
            while self.saved_count[index] > cap:
                excess = self.saved_count[index] - cap
                chunk = saved[0]
                n = len(chunk) // _EVENT.size
                if n <= excess:
                    saved.popleft()
                    dropped = n
                else:
                    saved[0] = chunk[excess * _EVENT.size:]
                    dropped = excess
                self.saved_count[index] -= dropped
                self.buffer.lose(index, dropped)
        self.drained[index] = written
        self._set_limit(index)

    def set_recording(self, on: bool) -> None:
        self.kernel.machine.write(self.flag, (1 if on else 0).to_bytes(4, "little"))

    def resize(self, entries_per_cpu: int) -> None:
        """Ring slots: the largest power of two that fits, at most the guest's capacity (the
        ring is drained whenever it fills, so its size only sets how often)."""
        self.slots = 1 << (min(entries_per_cpu, TRACE_RING_CAPACITY).bit_length() - 1)
        for cpu in range(len(self.kernel.cpus)):
            self._set_limit(cpu)

    def _set_limit(self, cpu: int) -> None:
        base = self.heads + cpu * _HEAD.size
        self.kernel.machine.write(base + 8, (self.slots - 1).to_bytes(8, "little")
                                  + (self.drained[cpu] + self.slots).to_bytes(8, "little"))

    def drain(self, buffer: RingBuffer) -> None:
        """The trace is being read: decode every saved and unread event into buffer."""
        for index in range(len(self.kernel.cpus)):
            self._save(index)
            saved = self.saved[index]
            while saved:
                raw = saved.popleft()
                for ip, parent, ts, pid in _EVENT.iter_unpack(raw):
                    buffer.record(TraceEntry(ts, index, self.cmdlines.get(pid, "<...>"), pid, ip, parent))
            self.saved_count[index] = 0
