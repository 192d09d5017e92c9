"""What the guest's debug information says about its functions: how many arguments each takes.

The guest is built with -g, as kernels built with CONFIG_DEBUG_INFO are, so a call from the
user can be checked against the function's prototype.  Only out-of-line functions count (a
DW_TAG_subprogram with code of its own); gcc's clones (foo.isra.0, foo.constprop.0) take
other arguments than their source, and their symbols are named apart, so a lookup by the
symbol's name never finds the source's prototype for them.  Files without debug information
(modules built by others) give no prototypes: their calls are zero-filled as before.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from elftools.common.exceptions import DWARFError, ELFError
from elftools.elf.elffile import ELFFile


@dataclass(frozen=True)
class Prototype:
    """A function's parameters as its DWARF describes them."""

    name: str
    params: tuple[str, ...]
    variadic: bool = False

    def accepts(self, nargs: int) -> bool:
        return nargs == len(self.params) or (self.variadic and nargs >= len(self.params))

    def __str__(self) -> str:
        params = [p or "?" for p in self.params] + (["..."] if self.variadic else [])
        return f"{self.name}({', '.join(params)})"


def _name(die) -> str | None:
    """A DIE's name, its own or its abstract origin's / specification's."""
    for _ in range(4):  # origin chains are short; never loop on a malformed one
        attr = die.attributes.get("DW_AT_name")
        if attr is not None:
            return attr.value.decode(errors="replace")
        ref = die.attributes.get("DW_AT_abstract_origin") or die.attributes.get("DW_AT_specification")
        if ref is None:
            return None
        die = die.get_DIE_from_attribute("DW_AT_abstract_origin" if "DW_AT_abstract_origin" in die.attributes
                                         else "DW_AT_specification")
    return None


def _prototype(die) -> Prototype | None:
    if "DW_AT_low_pc" not in die.attributes and "DW_AT_ranges" not in die.attributes:
        return None  # no code of its own: a declaration or an inline-only abstract instance
    name = _name(die)
    if name is None:
        return None
    params, variadic = [], False
    for child in die.iter_children():
        if child.tag == "DW_TAG_formal_parameter":
            params.append(_name(child) or "")
        elif child.tag == "DW_TAG_unspecified_parameters":
            variadic = True
    return Prototype(name, tuple(params), variadic)


def prototypes_of(data: bytes) -> dict[str, Prototype]:
    """Function name -> Prototype for the out-of-line functions of an ELF file's DWARF; an
    empty dict when it has none or it cannot be read (nothing is refused for it)."""
    try:
        elf = ELFFile(io.BytesIO(data))
        if not elf.has_dwarf_info():
            return {}
        found: dict[str, Prototype | None] = {}
        for cu in elf.get_dwarf_info().iter_CUs():
            for die in cu.get_top_DIE().iter_children():
                if die.tag == "DW_TAG_subprogram":
                    proto = _prototype(die)
                    if proto is not None:
                        # two static functions of one name and other prototypes: unknown
                        found[proto.name] = proto if found.get(proto.name, proto) == proto else None
        return {name: proto for name, proto in found.items() if proto is not None}
    except (DWARFError, ELFError, KeyError, ValueError, IndexError, AssertionError):
        return {}


@lru_cache(maxsize=32)
def _cached(path: str, size: int, mtime_ns: int) -> dict[str, Prototype]:
    return prototypes_of(Path(path).read_bytes())


def prototypes_in(path: str | Path) -> dict[str, Prototype]:
    """prototypes_of a file, read once per version of it."""
    st = Path(path).stat()
    return _cached(str(path), st.st_size, st.st_mtime_ns)
