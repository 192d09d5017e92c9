"""The kernel.ftrace_enabled sysctl: function tracing switched off and on again without any
tracer being unregistered (kernel/trace/ftrace.c ftrace_enable_sysctl(),
ftrace_startup_sysctl() and ftrace_shutdown_sysctl(); kernel/sysctl.c's entry, mode 0644).
The three functions are the same in v4.5.0 and v4.8.17.

Switching off rewrites every enabled call site to the nop (FTRACE_DISABLE_CALLS) but keeps
the records' reference counts and the registered ops; switching on rewrites them back
(FTRACE_UPDATE_CALLS).  Both are whole-table updates under ftrace_lock, with the same
RW-prepare / update / RO-post-process steps (and scheduling points) as starting a tracer, so
a module loading on the other CPU can meet them as it meets ftrace_startup().
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Generator

from .flags import FTRACE_DISABLE_CALLS, FTRACE_START_FUNC_RET, FTRACE_STOP_FUNC_RET, FTRACE_UPDATE_CALLS
from .sysctl import SysctlError, proc_dointvec

if TYPE_CHECKING:
    from .system import System
    from .update import Ftrace

NAME = "kernel.ftrace_enabled"


class FtraceEnabledSysctl:
    """ftrace_enabled's proc handler and the two updates it runs.  The state it acts on is
    the ftrace core's (ftrace_enabled, last_ftrace_enabled, ftrace_start_up,
    ftrace_trace_function, saved_ftrace_func); graph_active says whether a function-graph
    user is registered (ftrace_graph_active)."""

    def __init__(self, ftrace: "Ftrace", graph_active: Callable[[], bool]):
        self.ftrace = ftrace
        self.graph_active = graph_active

    def read(self) -> str:
        """A read of /proc/sys/kernel/ftrace_enabled: ftrace_enable_sysctl() with write=0,
        which answers -ENODEV once ftrace is dead (before proc_dointvec() prints the value)."""
        if self.ftrace.ftrace_disabled:
            raise SysctlError(f"{NAME}: ftrace is disabled after a bug (see dmesg)", errno.ENODEV)
        return f"{int(self.ftrace.ftrace_enabled)}\n"

    def ftrace_enable_sysctl(self, data: bytes) -> Generator[object, None, None]:
        """ftrace_enable_sysctl() (v4.5.0, v4.8.17): under ftrace_lock; -ENODEV once ftrace is
        dead; proc_dointvec() stores the int written; only a change of its truth against
        last_ftrace_enabled acts.  On: the trace function is recomputed from the registered
        ops and ftrace_startup_sysctl() runs.  Off: the trace function becomes ftrace_stub
        and ftrace_shutdown_sysctl() runs."""
        ftrace = self.ftrace
        yield from ftrace.ftrace_lock.acquire()
        try:
            ftrace.touch_disabled()
            if ftrace.ftrace_disabled:
                raise SysctlError(f"{NAME}: ftrace is disabled after a bug (see dmesg)", errno.ENODEV)
            ftrace.ftrace_enabled = proc_dointvec(NAME, data)
            enabled = bool(ftrace.ftrace_enabled)
            if ftrace.last_ftrace_enabled == enabled:
                return
            ftrace.last_ftrace_enabled = enabled
            ftrace.generation += 1  # what is traced changes from here
            if enabled:
                if ftrace.ops_list:  # "we are starting ftrace again"
                    ftrace.update_ftrace_function()
                yield from self.ftrace_startup_sysctl()
            else:
                ftrace.ftrace_trace_function = ftrace.arch.addrs.ftrace_stub
                yield from self.ftrace_shutdown_sysctl()
        finally:
            ftrace.ftrace_lock.release()

    def ftrace_startup_sysctl(self) -> Generator[object, None, None]:
        """ftrace_startup_sysctl() (v4.5.0, v4.8.17): saved_ftrace_func is forgotten so that
        the trace function is rewritten too; with a tracer registered (ftrace_start_up), every
        site its ops select becomes a call again (FTRACE_UPDATE_CALLS, plus
        FTRACE_START_FUNC_RET for a graph user) through ftrace_startup_enable()."""
        ftrace = self.ftrace
        if ftrace.ftrace_disabled:
            return
        ftrace.saved_ftrace_func = None  # "Force update next time"
        if ftrace.ftrace_start_up:
            command = FTRACE_UPDATE_CALLS
            if self.graph_active():
                command |= FTRACE_START_FUNC_RET
            yield from ftrace.ftrace_startup_enable(command)

    def ftrace_shutdown_sysctl(self) -> Generator[object, None, None]:
        """ftrace_shutdown_sysctl() (v4.5.0, v4.8.17): with a tracer registered, every enabled
        site becomes the nop (FTRACE_DISABLE_CALLS, plus FTRACE_STOP_FUNC_RET for a graph
        user); the records keep their counts and the trampoline's ftrace_call is left as it
        is (no FTRACE_UPDATE_TRACE_FUNC)."""
        ftrace = self.ftrace
        if ftrace.ftrace_disabled:
            return
        if ftrace.ftrace_start_up:
            command = FTRACE_DISABLE_CALLS
            if self.graph_active():
                command |= FTRACE_STOP_FUNC_RET
            yield from ftrace.ftrace_run_update_code(command)


def install(system: "System") -> FtraceEnabledSysctl:
    """kernel/sysctl.c's kern_table entry: kernel.ftrace_enabled, 0644, ftrace_enable_sysctl."""
    graph = system.graph
    handler = FtraceEnabledSysctl(system.ftrace,
                                  lambda: bool(graph.active or graph.entry_handler is not None))
    system.sysctls.add(NAME, handler.read, handler.ftrace_enable_sysctl, mode=0o644)
    return handler
