"""What the ftrace core needs from the kernel around it, as a small Protocol: printk, naming
addresses, the current CPU and task, WARN().  The emulator and the test fake implement it."""

from __future__ import annotations

from typing import Protocol


class KernelEnv(Protocol):
    def printk(self, text: str) -> None:
        """Append text to the kernel log (a line or a continuation)."""

    def format_ip(self, ip: int) -> str:
        """%pS: `sym+0xoff/0xsize [mod]`."""

    def name_ip(self, ip: int) -> str:
        """%ps: `sym [mod]`."""

    def sym_short(self, ip: int) -> str:
        """seq_print_sym_short(), as the function tracer prints: `sym`, no module."""

    def warn(self, where: str, file: str = "kernel/trace/ftrace.c") -> None:
        """WARN(): the "cut here" block naming the function (in file) where it fired, and the
        current CPU and task."""

    def bug(self, where: str, detail: str) -> None:
        """BUG(): an oops of the current task, raised as emu.errors.GuestFault."""
