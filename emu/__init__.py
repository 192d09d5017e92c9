"""The emulated machine: Unicorn with real page protections, the gcc-built kernel image and
its modules, kallsyms, CPUs and the single text-write path.  Knows nothing of ftrace.

Names are loaded on first use, so the build side (emu.toolchain, used by
scripts/build_guest.py) works without Unicorn installed."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Cpu": "cpu", "Task": "cpu", "Kernel": "kernel", "Machine": "machine", "Perm": "machine",
    "Module": "modules", "ModuleState": "modules",
    "ElfError": "errors", "EmuError": "errors", "GuestFault": "errors", "MemoryAccessError": "errors",
    "ModuleInitFault": "errors", "ModuleLoadError": "errors", "SymbolError": "errors",
    "TextWriteFault": "errors", "ToolchainError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'emu' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
