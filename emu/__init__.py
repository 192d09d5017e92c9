"""The emulated machine: Unicorn with real page protections, the gcc-built kernel image and
its modules, kallsyms, CPUs and the single text-write path.  Knows nothing of ftrace."""

from __future__ import annotations

from .cpu import Cpu, Task
from .errors import (ElfError, EmuError, GuestFault, MemoryAccessError, ModuleInitFault, ModuleLoadError, SymbolError,
                     TextWriteFault, ToolchainError)
from .kernel import Kernel
from .machine import Machine, Perm
from .modules import Module, ModuleState

__all__ = [
    "Cpu", "ElfError", "EmuError", "GuestFault", "Kernel", "Machine", "MemoryAccessError", "Module", "ModuleInitFault",
    "ModuleLoadError", "ModuleState", "Perm", "SymbolError", "Task", "TextWriteFault", "ToolchainError",
]
