"""A Python port of Linux's dynamic ftrace (kernel/trace/ftrace.c, arch/x86/kernel/ftrace.c),
running on the emulated machine in `emu`, with the function tracer, tracefs and the CLI."""

from __future__ import annotations
