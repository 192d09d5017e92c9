"""ftrace_dump_on_oops (kernel/trace/trace.c, the same in v4.5.0 and v4.8.17): when the guest
oopses, the ring buffer is dumped into the oops (ftrace_dump()), from trace_die_handler(), the
die notifier that tracer_alloc_buffers() registers; __die() calls it right after its "Oops:"
line (arch/x86/kernel/dumpstack.c).  Set by the `ftrace_dump_on_oops[=orig_cpu]` boot option
(ftrace_core.cmdline) or the kernel.ftrace_dump_on_oops sysctl (kernel/sysctl.c: 0644,
proc_dointvec: any int; 1 dumps every CPU, 2 the oopsing one, another non-zero value every
CPU after "Bad dumping mode").

A fault the kernel fixes up (the text-poke stores of probe_kernel_write()) is no oops and
dumps nothing (emu.cpu: fixup)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generator

from ..sysctl import proc_dointvec
from .dump import ftrace_dump

if TYPE_CHECKING:
    from ..system import System

NAME = "kernel.ftrace_dump_on_oops"


class DumpOnOops:
    """The ftrace_dump_on_oops variable, its sysctl and trace_die_handler()."""

    def __init__(self, system: "System", mode: int = 0):
        self.system = system
        self.ftrace_dump_on_oops = mode

    def read(self) -> str:
        return f"{self.ftrace_dump_on_oops}\n"

    def write(self, data: bytes) -> Generator[object, None, None]:
        """proc_dointvec(): the int is stored; nothing else happens until an oops."""
        self.ftrace_dump_on_oops = proc_dointvec(NAME, data)
        yield from ()

    def trace_die_handler(self, cpu) -> str:
        """trace_die_handler() on DIE_OOPS: ftrace_dump(ftrace_dump_on_oops) when it is set;
        the lines it prints, for the oops report to carry."""
        if not self.ftrace_dump_on_oops:
            return ""
        printed: list[str] = []
        ftrace_dump(self.system, self.ftrace_dump_on_oops, cpu, printk=printed.append)
        return "".join(printed)


def install(system: "System", mode: int = 0) -> DumpOnOops:
    """tracer_alloc_buffers()'s register_die_notifier(&trace_die_notifier), and the sysctl."""
    handler = DumpOnOops(system, mode)
    system.sysctls.add(NAME, handler.read, handler.write, mode=0o644)
    system.kernel.machine.die_notifiers.append(handler.trace_die_handler)
    return handler
