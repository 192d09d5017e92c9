"""x86-64 relocations for module loading: computing each value is pure; the loader writes.

One table row per supported type: how to compute it and how many bytes it fills, with the
range the result must fit (as the kernel's apply_relocate_add checks "overflow").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import ModuleLoadError

ENOEXEC = 8


@dataclass(frozen=True)
class RelocKind:
    name: str
    size: int
    signed: bool
    compute: Callable[[int, int, int], int]  # (S, A, P) -> value


R_X86_64: dict[int, RelocKind] = {
    1: RelocKind("R_X86_64_64", 8, False, lambda s, a, p: s + a),
    2: RelocKind("R_X86_64_PC32", 4, True, lambda s, a, p: s + a - p),
    4: RelocKind("R_X86_64_PLT32", 4, True, lambda s, a, p: s + a - p),
    10: RelocKind("R_X86_64_32", 4, False, lambda s, a, p: s + a),
    11: RelocKind("R_X86_64_32S", 4, True, lambda s, a, p: s + a),
}

# Names of a few unsupported types, so the error can say which one it met.
_OTHER_NAMES = {0: "R_X86_64_NONE", 3: "R_X86_64_GOT32", 5: "R_X86_64_COPY", 8: "R_X86_64_RELATIVE",
                9: "R_X86_64_GOTPCREL", 24: "R_X86_64_PC64", 41: "R_X86_64_GOTPCRELX",
                42: "R_X86_64_REX_GOTPCRELX"}


def reloc_name(rtype: int) -> str:
    kind = R_X86_64.get(rtype)
    return kind.name if kind else _OTHER_NAMES.get(rtype, f"type {rtype}")


def compute(module: str, rtype: int, s: int, a: int, p: int, where: str) -> bytes:
    """The bytes to store at P for relocation rtype with symbol value S and addend A.

    `where` names the section and offset for error messages."""
    kind = R_X86_64.get(rtype)
    if kind is None:
        raise ModuleLoadError(f"{module}: unsupported relocation {reloc_name(rtype)} at {where}", ENOEXEC)
    value = kind.compute(s, a, p)
    bits = kind.size * 8
    if kind.size == 8:
        return (value & ((1 << 64) - 1)).to_bytes(8, "little")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if kind.signed else (0, (1 << bits) - 1)
    # S is a kernel-half address: interpret it as the signed 64-bit value the CPU sees.
    if value >= 1 << 63:
        value -= 1 << 64
    if not lo <= value <= hi:
        raise ModuleLoadError(
            f"{module}: overflow in relocation {kind.name} at {where}: value {value:#x} does not fit", ENOEXEC)
    return (value & ((1 << bits) - 1)).to_bytes(kind.size, "little")
