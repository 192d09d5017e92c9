"""The machine's error tree: everything emu raises derives from EmuError."""

from __future__ import annotations


class EmuError(Exception):
    """Base of every error raised by the emulated machine."""


class ToolchainError(EmuError):
    """gcc or ld is missing or failed while building guest code."""


class ElfError(EmuError):
    """An ELF file is malformed or not what the loader accepts."""


class ModuleLoadError(EmuError):
    """A module could not be loaded or unloaded; errno is the kernel's error code."""

    def __init__(self, message: str, errno: int = 22):
        super().__init__(message)
        self.errno = errno


class ModuleInitFault(ModuleLoadError):
    """A module's init_module or cleanup_module oopsed; `report` is the oops."""

    def __init__(self, message: str, report: str):
        super().__init__(message, 14)  # EFAULT
        self.report = report


class SymbolError(EmuError):
    """A symbol name or address could not be resolved."""


class BadCall(EmuError):
    """A call into the guest that cannot be made as asked: not a function, too many
    arguments, or an argument outside the 64-bit registers' range."""


class MemoryAccessError(EmuError):
    """The host asked for memory that is not mapped, or wrote where it may not."""


class GuestFault(EmuError):
    """The emulated CPU faulted; `report` is the kernel-oops-like text."""

    def __init__(self, report: str, *, cpu: int, rip: int, address: int | None, kind: str,
                 regs: dict[str, int] | None = None):
        lines = report.splitlines()
        where = next((line for line in lines[1:3] if line.startswith("IP: ")), None)
        super().__init__((lines[0] + (f" ({where})" if where else "")) if lines else kind)
        self.report = report
        self.regs = regs or {}
        self.cpu = cpu
        self.rip = rip
        self.address = address
        self.kind = kind


class TextWriteFault(EmuError):
    """A store to text through the text-write path faulted (the kernel's -EPERM)."""

    def __init__(self, address: int, index: int):
        super().__init__(f"write to read-only text at {address:#x}")
        self.address = address
        self.index = index
