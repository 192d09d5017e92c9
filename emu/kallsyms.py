"""kallsyms: addresses to `symbol+0xoff/0xsize [module]` and names back to addresses."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from .errors import SymbolError


@dataclass(frozen=True)
class KSym:
    name: str
    addr: int
    size: int
    module: str | None = None  # None for the kernel image
    is_text: bool = True

    def __repr__(self) -> str:
        mod = f" [{self.module}]" if self.module else ""
        return f"<KSym {self.name}{mod} {self.addr:#x}/{self.size:#x}>"


class Kallsyms:
    """The kernel's symbols plus each loaded module's, kept sorted by address."""

    def __init__(self) -> None:
        self._syms: list[KSym] = []
        self._addrs: list[int] = []
        self._by_name: dict[tuple[str, str | None], KSym] = {}
        self._text_ranges: dict[str | None, list[tuple[int, int]]] = {}
        #: Modules still UNFORMED: __module_address() skips them, so kallsyms, %pS and the
        #: filters do not see their symbols yet (v4.4-v4.8 kernel/module.c).
        self.unformed: set[str] = set()

    def add(self, syms: list[KSym], module: str | None = None,
            text_ranges: list[tuple[int, int]] | None = None) -> None:
        for sym in syms:
            # Among aliases at one address keep the first one added under each name.
            self._by_name.setdefault((sym.name, sym.module), sym)
        self._syms = sorted(self._syms + syms, key=lambda s: (s.addr, s.module or "", s.name))
        self._addrs = [s.addr for s in self._syms]
        if text_ranges:
            self._text_ranges[module] = list(text_ranges)

    def remove_module(self, module: str) -> None:
        self.unformed.discard(module)
        self._syms = [s for s in self._syms if s.module != module]
        self._addrs = [s.addr for s in self._syms]
        self._by_name = {k: v for k, v in self._by_name.items() if v.module != module}
        self._text_ranges.pop(module, None)

    def modules(self) -> set[str]:
        return {s.module for s in self._syms if s.module}

    def modules_linked_in(self) -> list[str]:
        """print_modules(): the modules, newest first, UNFORMED ones left out."""
        return [m for m in reversed(self._text_ranges) if m is not None and m not in self.unformed]

    def lookup(self, addr: int, unformed: bool = False) -> tuple[KSym, int] | None:
        """The symbol containing addr and the offset into it, or None.  A sized symbol wins
        over a bare label at the same place (so __fentry__, not the linker's _text).  An
        UNFORMED module's symbols are found only when asked for (unformed=True: the tool's
        own views, never what the kernel prints)."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        label = None
        for sym in self._syms[max(0, i - 16): i + 1][::-1]:
            if sym.module in self.unformed and not unformed:
                continue
            if sym.size and sym.addr <= addr < sym.addr + sym.size:
                return sym, addr - sym.addr
            if not sym.size and sym.addr == addr and label is None:
                label = sym
        return (label, 0) if label is not None else None

    def format(self, addr: int, unformed: bool = False) -> str:
        """`sym+0xoff/0xsize [mod]` as %pS prints it, or the bare hex address."""
        hit = self.lookup(addr, unformed)
        if hit is None:
            return f"0x{addr:x}"
        sym, off = hit
        mod = f" [{sym.module}]" if sym.module else ""
        return f"{sym.name}+{off:#x}/{sym.size:#x}{mod}"

    def name(self, addr: int) -> str:
        """The bare symbol name (%ps), or the hex address when unknown."""
        hit = self.lookup(addr)
        return hit[0].name if hit else f"0x{addr:x}"

    def resolve(self, name: str, module: str | None = "*") -> int:
        """Address of name; module "*" searches the kernel first, then every module."""
        if module != "*":
            sym = self._by_name.get((name, module))
        else:
            sym = self._by_name.get((name, None)) or next(
                (s for (n, m), s in sorted(self._by_name.items(), key=lambda kv: kv[0][1] or "")
                 if n == name), None)
        if sym is None:
            where = f" in module {module}" if module not in ("*", None) else ""
            raise SymbolError(f"unknown symbol {name}{where}")
        return sym.addr

    def get(self, name: str, module: str | None = "*") -> KSym:
        addr = self.resolve(name, module)
        hit = self.lookup(addr, unformed=True)
        assert hit is not None
        return next((s for s in self._syms if s.addr == addr and s.name == name), hit[0])

    def is_text(self, addr: int) -> bool:
        return any(lo <= addr < hi for ranges in self._text_ranges.values() for lo, hi in ranges)

    def __iter__(self):
        return iter(self._syms)
