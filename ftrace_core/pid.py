"""set_ftrace_pid: which tasks the function tracer follows (kernel/trace/ftrace.c, trace.c).

Both trees call an FTRACE_OPS_FL_PID ops through ftrace_pid_func while pids are set
(__register_ftrace_function(), ftrace_update_pid_func()), so ftrace_call points at the guest's
ftrace_pid_func, whose host hook makes the check and then runs the ops' saved callback.
What the check reads differs:

  v4.5 (FtracePidList)   a global list of pids; adding one sets the trace flag of its tasks
                         (set_ftrace_pid_task) and ftrace_pid_func() tests current's flag;
  v4.7 on (FunctionPids) the trace array's pid bitmap (tr->function_pids) and a per-CPU
                         ftrace_ignore_pid, which a sched_switch probe sets for the next task.

The machine's tasks are what its CPUs run (Cpu.task, re-created at will as labels), so a
task is its pid here: the v4.5 trace flag is kept per pid, and find_get_pid() finds a pid
that some CPU is running now.
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, Generator

from .errors import TracefsError
from .flags import FTRACE_OPS_FL_PID
from .kernels import PID_PER_TRACE_ARRAY
from .kstr import kstrtoul_base0
from .ops import FtraceOps
from .tracefs.parser import TraceParser

if TYPE_CHECKING:
    from .system import System

#: PID_MAX_DEFAULT (include/linux/threads.h, CONFIG_BASE_SMALL=n): the pid_max sysctl's
#: default, which trace_pid_write() sizes the bitmap by.
PID_MAX_DEFAULT = 0x8000
#: trace_pid_write()'s parser: PID_BUF_SIZE (127) + 1.
PID_BUF_SIZE = 127


class PidFilter(ABC):
    """What both trees share: wrapping FTRACE_OPS_FL_PID ops in ftrace_pid_func.  Each tree's
    filter (FtracePidList, FunctionPids) says what is filtered and how the file reads."""

    def __init__(self, system: "System"):
        self.system = system
        self.ftrace = system.ftrace
        self.cpus = system.kernel.cpus
        self.pid_func = system.kernel.symbol("ftrace_pid_func")

    # -- subclasses say what is filtered ---------------------------------------------------
    @abstractmethod
    def ftrace_pids_enabled(self, ops: FtraceOps) -> bool:
        """ftrace_pids_enabled(): does set_ftrace_pid apply to this ops now?"""

    @abstractmethod
    def ignores(self, cpu) -> bool:
        """Is what runs on cpu now left untraced (ftrace_pid_func's test)?"""

    @abstractmethod
    def ftrace_trace_task(self, cpu) -> bool:
        """ftrace_trace_task() (trace.h): trace_graph_entry()'s test of the same filter."""

    # -- the ops side (kernel/trace/ftrace.c, the same in v4.5 and v4.8.17) -----------------
    def ftrace_pid_func(self, ip: int, parent_ip: int, op: FtraceOps, cpu) -> None:
        """ftrace_pid_func(): the saved callback, unless the current task is filtered out."""
        if self.ignores(cpu):
            return
        if op.saved_handler is not None:
            op.saved_handler(ip, parent_ip, cpu)

    def _set_pid_func(self, op: FtraceOps, on: bool) -> None:
        if on:
            op.func = self.pid_func
            op.handler = lambda ip, parent, cpu, op=op: self.ftrace_pid_func(ip, parent, op, cpu)
        else:
            op.func, op.handler = op.saved_func, op.saved_handler

    def _owner(self, ops: FtraceOps) -> "PidFilter":
        """The filter of the trace array an ops belongs to (ops->private; v4.7 on each trace
        array has its own), else this one."""
        return ops.private if isinstance(ops.private, PidFilter) else self

    def ops_registered(self, ops: FtraceOps) -> None:
        """__register_ftrace_function(): save func, and call through ftrace_pid_func if pids
        are set for this ops."""
        ops.saved_func, ops.saved_handler = ops.func, ops.handler
        owner = self._owner(ops)
        if owner.ftrace_pids_enabled(ops):
            owner._set_pid_func(ops, True)

    def ops_unregistered(self, ops: FtraceOps) -> None:
        """__unregister_ftrace_function(): ops->func = ops->saved_func."""
        if ops.saved_func:
            ops.func, ops.handler = ops.saved_func, ops.saved_handler

    def ftrace_update_pid_func(self) -> None:
        """ftrace_update_pid_func(): only while something is traced, every PID ops calls
        through ftrace_pid_func or its own func again; then update_ftrace_function()."""
        ftrace = self.ftrace
        if ftrace.ftrace_trace_function == ftrace.arch.addrs.ftrace_stub:
            return
        for op in ftrace.ops_list:
            if op.flags & FTRACE_OPS_FL_PID:
                owner = self._owner(op)
                owner._set_pid_func(op, owner.ftrace_pids_enabled(op))
        ftrace.update_ftrace_function()

    def _update(self) -> Generator[object, None, None]:
        """ftrace_update_pid_func(), then ftrace_startup_all(0): ftrace_call is rewritten when
        the trace function changed.  Caller holds ftrace_lock."""
        self.ftrace.touch_disabled()
        self.ftrace.generation += 1
        self.ftrace_update_pid_func()
        yield from self.ftrace.ftrace_startup_enable(0)

    def _locked(self, body: Callable[[], Generator[object, None, int]]) -> Generator[object, None, int]:
        lock = self.ftrace.ftrace_lock
        yield from lock.acquire()
        try:
            return (yield from body())
        finally:
            lock.release()

    # -- the file ------------------------------------------------------------------------------
    @abstractmethod
    def read(self) -> str:
        """fpid_show(): what set_ftrace_pid reads."""

    @abstractmethod
    def write_steps(self, data: bytes) -> Generator[object, None, int]:
        """ftrace_pid_write(): one write's bytes taken."""

    @abstractmethod
    def reset_steps(self) -> Generator[object, None, None]:
        """ftrace_pid_reset(): the list emptied (an open with O_TRUNC)."""


class FtracePidList(PidFilter):
    """v4.4-v4.6: LIST_HEAD(ftrace_pids), newest first; 0 stands for every CPU's idle task
    (ftrace_swapper_pid)."""

    def __init__(self, system: "System"):
        super().__init__(system)
        self.pids: list[int] = []
        self.traced: set[int] = set()  # the pids whose tasks carry TSK_TRACE_FL_TRACE

    def ftrace_pids_enabled(self, ops: FtraceOps) -> bool:
        """ftrace_pids_enabled() && FTRACE_OPS_FL_PID: the list is not empty."""
        return bool(ops.flags & FTRACE_OPS_FL_PID) and bool(self.pids)

    def ignores(self, cpu) -> bool:
        return cpu.task.pid not in self.traced  # !test_tsk_trace_trace(current)

    def ftrace_trace_task(self, cpu) -> bool:
        return not self.pids or cpu.task.pid in self.traced

    def find_get_pid(self, pid: int) -> bool:
        """find_get_pid(): is some task running with this pid?"""
        return pid > 0 and any(cpu.task.pid == pid for cpu in self.cpus)

    def ftrace_pid_add(self, p: int) -> Generator[object, None, int]:
        """ftrace_pid_add(): 0 means the swapper tasks; an unknown pid is -EINVAL, one
        already listed is no change."""
        def body() -> Generator[object, None, int]:
            if p and not self.find_get_pid(p):
                return -errno.EINVAL
            if p in self.pids:
                return 0
            self.pids.insert(0, p)  # list_add()
            self.traced.add(p)  # set_ftrace_pid_task(): set_ftrace_swapper() for 0
            yield from self._update()
            return 0
        return (yield from self._locked(body))

    def reset_steps(self) -> Generator[object, None, None]:
        """ftrace_pid_reset(): clear every listed task's flag, empty the list, update."""
        def body() -> Generator[object, None, int]:
            for pid in self.pids:
                self.traced.discard(pid)  # clear_ftrace_pid_task()
            self.pids.clear()
            yield from self._update()
            return 0
        yield from self._locked(body)

    def read(self) -> str:
        """fpid_show(): "no pid", or each pid newest first ("swapper tasks" for 0)."""
        if not self.pids:
            return "no pid\n"
        return "".join("swapper tasks\n" if pid == 0 else f"{pid}\n" for pid in self.pids)

    def write_steps(self, data: bytes) -> Generator[object, None, int]:
        """ftrace_pid_write() (v4.5): the whole write is one number: under 64 bytes, blank
        (taken as one byte) or kstrtol() base 10, then ftrace_pid_add() of it as an int."""
        if len(data) >= 64:
            raise TracefsError(f"set_ftrace_pid: a write of {len(data)} bytes (at most 63)", errno.EINVAL)
        text = data.decode("latin-1").strip(" \t\n\v\f\r")
        if not text:
            return 1  # "echo > set_ftrace_pid" clears quietly (O_TRUNC did it)
        digits = text[1:] if text[:1] in "+-" else text
        if not digits or not digits.isascii() or not digits.isdigit():
            raise TracefsError(f"set_ftrace_pid: {text!r} is not a decimal pid", errno.EINVAL)
        val = int(text)
        if not -(1 << 63) <= val < 1 << 63:
            raise TracefsError(f"set_ftrace_pid: {text} is out of range", errno.ERANGE)
        p = (val + (1 << 31)) % (1 << 32) - (1 << 31)  # ftrace_pid_add(int p)
        ret = yield from self.ftrace_pid_add(p)
        if ret:
            raise TracefsError(f"set_ftrace_pid: no task has pid {text}", -ret)
        return len(data)


class FunctionPids(PidFilter):
    """v4.7 on: the trace array's tr->function_pids (a bitmap of pid_max bits, None when no
    pid is set) and each CPU's ftrace_ignore_pid."""

    def __init__(self, system: "System"):
        super().__init__(system)
        self.function_pids: set[int] | None = None
        self.pid_max_of_list = 0
        self.ignore_pid = [False] * len(self.cpus)
        self.pid_max = PID_MAX_DEFAULT  # the pid_max sysctl

    def ftrace_pids_enabled(self, ops: FtraceOps) -> bool:
        """ftrace_pids_enabled(ops): a PID ops of a trace array that has pids set."""
        return bool(ops.flags & FTRACE_OPS_FL_PID) and ops.private is self and self.function_pids is not None

    def ignores(self, cpu) -> bool:
        return self.ignore_pid[cpu.index]  # this_cpu_read(tr->trace_buffer.data->ftrace_ignore_pid)

    def ftrace_trace_task(self, cpu) -> bool:
        return not self.ignore_pid[cpu.index]

    def trace_ignore_this_task(self, pid: int) -> bool:
        """trace_ignore_this_task() with trace_find_filtered_pid()."""
        if self.function_pids is None:
            return False
        return not (pid < self.pid_max_of_list and pid in self.function_pids)

    def ftrace_filter_pid_sched_switch_probe(self, cpu, prev, next_task) -> None:
        """ftrace_filter_pid_sched_switch_probe(): the CPU ignores next unless it is listed."""
        self.ignore_pid[cpu.index] = self.trace_ignore_this_task(next_task.pid)

    def _probe_registered(self, on: bool) -> None:
        """register_trace_sched_switch() / unregister_trace_sched_switch()."""
        probe = self.ftrace_filter_pid_sched_switch_probe
        for cpu in self.cpus:
            if on and probe not in cpu.switch_probes:
                cpu.switch_probes.append(probe)
            elif not on and probe in cpu.switch_probes:
                cpu.switch_probes.remove(probe)

    def clear_ftrace_pids(self) -> None:
        """clear_ftrace_pids(): no probe, no CPU ignoring, no list."""
        if self.function_pids is None:
            return
        self._probe_registered(False)
        self.ignore_pid = [False] * len(self.cpus)
        self.function_pids = None

    def reset_steps(self) -> Generator[object, None, None]:
        """ftrace_pid_reset()."""
        def body() -> Generator[object, None, int]:
            self.clear_ftrace_pids()
            yield from self._update()
            return 0
        yield from self._locked(body)

    def read(self) -> str:
        """fpid_show() over trace_pid_start/next(): "no pid", or the pids in ascending order."""
        if self.function_pids is None:
            return "no pid\n"
        return "".join(f"{pid}\n" for pid in sorted(self.function_pids))

    def trace_pid_write(self, data: bytes) -> tuple[int, set[int] | None, int]:
        """trace_pid_write(): all or nothing, a new list from the old one plus each token
        (kstrtoul base 0, below pid_max); (bytes taken, the new list or None, its pid_max),
        or TracefsError -EINVAL naming the bad token."""
        pid_max = max(self.pid_max, self.pid_max_of_list if self.function_pids is not None else 0)
        pids = set(self.function_pids or ())
        nr_pids = len(pids)
        parser = TraceParser(PID_BUF_SIZE + 1)
        read = ret = 0
        while data:
            parser.pos = 0  # each token is read afresh (pos = 0)
            ret = parser.get_user(data)
            if ret < 0 or not parser.loaded:
                break
            read += ret
            data = data[ret:]
            token = parser.token
            val, err = kstrtoul_base0(token)
            if err or val >= pid_max:  # either way -EINVAL
                why = "not a number" if err else f"not below pid_max ({pid_max})"
                raise TracefsError(f"set_ftrace_pid: {token!r}: {why}", errno.EINVAL)
            pids.add(val)
            nr_pids += 1
            parser.clear()
            ret = 0
        if ret < 0:
            raise TracefsError("set_ftrace_pid: a pid longer than 127 characters", -ret)
        if not nr_pids:  # cleared the list
            return ret, None, 0
        return read, pids, pid_max

    def write_steps(self, data: bytes) -> Generator[object, None, int]:
        """ftrace_pid_write() (v4.7 on): under ftrace_lock, the new list replaces the old; the
        sched_switch probe comes with the first list; every CPU re-checks its current task
        (ignore_task_cpu() on each CPU); then the ops are updated."""
        if not data:
            return 0

        def body() -> Generator[object, None, int]:
            read, pids, pid_max = self.trace_pid_write(data)
            had = self.function_pids is not None
            self.function_pids, self.pid_max_of_list = pids, pid_max
            if not had and pids is not None:
                self._probe_registered(True)
            for cpu in self.cpus:  # on_each_cpu(ignore_task_cpu, tr, 1)
                self.ignore_pid[cpu.index] = self.trace_ignore_this_task(cpu.task.pid)
            yield from self._update()
            return read
        return (yield from self._locked(body))


def install(system: "System") -> PidFilter:
    """set_ftrace_pid's filter for the top-level trace array, as the variant's tree has it;
    global_ops is its ops (FTRACE_OPS_FL_PID, private = the trace array's filter)."""
    kind = FunctionPids if system.ftrace.kernel.has(PID_PER_TRACE_ARRAY) else FtracePidList
    pids = kind(system)
    system.ftrace.pids = pids
    system.global_ops.flags |= FTRACE_OPS_FL_PID
    system.global_ops.private = pids
    system.graph.trace_task = pids.ftrace_trace_task  # trace_graph_entry()'s test
    return pids
