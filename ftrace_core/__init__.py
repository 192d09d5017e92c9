"""A Python port of Linux's dynamic ftrace (kernel/trace/ftrace.c, arch/x86/kernel/ftrace.c),
running on the emulated machine in `emu`, with the function tracer, tracefs and the CLI.

    import ftrace_core
    system = ftrace_core.boot(variant="fixed")
    system.tracefs.write("current_tracer", "function")
    system.call("workload_run", 3)
    print(system.tracefs.read("trace"))
"""

from __future__ import annotations

from .errors import FtraceDead, FtraceError, TracefsError
from .system import System, boot
from .kernels import VARIANTS

__all__ = ["FtraceDead", "FtraceError", "System", "TracefsError", "VARIANTS", "boot"]
