"""Reading the guest's ELF files: the kernel image (ET_EXEC) and modules (ET_REL).

pyelftools parses; this module checks what the loader relies on and turns every parse
failure into ElfError with a one-line message naming the file and what is wrong.  Only plain
data leaves this module: segments, sections, symbols, relocations.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError as _PyElfError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from .errors import ElfError

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2
MAX_ELF_SIZE = 64 << 20


@dataclass(frozen=True)
class Segment:
    vaddr: int
    memsz: int
    data: bytes
    flags: int  # PF_X=1, PF_W=2, PF_R=4


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    kind: str  # STT_FUNC, STT_OBJECT, STT_NOTYPE, STT_SECTION, ...
    bind: str  # STB_GLOBAL, STB_LOCAL, STB_WEAK
    shndx: int | str  # section index, or "SHN_UNDEF" / "SHN_ABS" / "SHN_COMMON"


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    kind: str  # SHT_PROGBITS, SHT_NOBITS, ...
    flags: int
    addr: int
    size: int
    align: int
    data: bytes


@dataclass(frozen=True)
class Relocation:
    offset: int
    type: int
    symbol: int  # index into the object's symbol table
    addend: int


@dataclass
class KernelImageFile:
    path: str
    entry: int
    segments: list[Segment]
    symbols: list[Symbol]

    def symbol(self, name: str) -> Symbol:
        for sym in self.symbols:
            if sym.name == name:
                return sym
        raise ElfError(f"{self.path}: no symbol {name}")


@dataclass
class ObjectFile:
    """A relocatable object: what a module is."""

    path: str
    sections: list[Section]
    symbols: list[Symbol]
    relocations: dict[int, list[Relocation]] = field(default_factory=dict)  # target section -> relocs


def _open(data: bytes, path: str, want_type: str) -> ELFFile:
    if len(data) > MAX_ELF_SIZE:
        raise ElfError(f"{path}: file of {len(data)} bytes is too large")
    if data[:4] != b"\x7fELF":
        raise ElfError(f"{path}: not an ELF file (bad magic)")
    if len(data) < 64:
        raise ElfError(f"{path}: truncated ELF header ({len(data)} bytes)")
    try:
        elf = ELFFile(io.BytesIO(data))
        machine, kind, cls = elf["e_machine"], elf["e_type"], elf.elfclass
    except Exception as exc:  # pyelftools' own errors and whatever garbage makes it raise
        raise ElfError(f"{path}: malformed ELF header: {type(exc).__name__}: {exc}") from None
    if cls != 64 or not elf.little_endian:
        raise ElfError(f"{path}: not a 64-bit little-endian ELF file")
    if machine != "EM_X86_64":
        raise ElfError(f"{path}: wrong machine {machine}, expected EM_X86_64")
    if kind != want_type:
        raise ElfError(f"{path}: ELF type {kind}, expected {want_type}")
    return elf


def printable(name: str) -> str:
    """A name from a file, made safe for one-line messages and listings (escapes control
    characters; a well-formed name is returned unchanged)."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def _symbols(elf: ELFFile, path: str) -> list[Symbol]:
    table = elf.get_section_by_name(".symtab")
    if table is None:
        raise ElfError(f"{path}: no symbol table (.symtab); was it stripped?")
    out = []
    for sym in table.iter_symbols():
        out.append(Symbol(printable(sym.name), sym["st_value"], sym["st_size"], sym["st_info"]["type"],
                          sym["st_info"]["bind"], sym["st_shndx"]))
    return out


def read_kernel_image(path: str | Path) -> KernelImageFile:
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ElfError(f"{path}: cannot read: {exc.strerror}") from None
    elf = _open(data, path, "ET_EXEC")
    try:
        segments = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            segments.append(Segment(seg["p_vaddr"], seg["p_memsz"], seg.data(), seg["p_flags"]))
        return KernelImageFile(path, elf["e_entry"], segments, _symbols(elf, path))
    except (_PyElfError, ValueError, KeyError, IndexError, OSError) as exc:
        raise ElfError(f"{path}: malformed kernel image: {exc}") from None


def read_object(data: bytes, path: str) -> ObjectFile:
    """Parse a relocatable object (a module) from bytes."""
    elf = _open(data, path, "ET_REL")
    _check_section_table(data, path)
    try:
        return _read_object(elf, data, path)
    except ElfError:
        raise
    except Exception as exc:  # pyelftools on garbage: its errors become ours where they enter
        raise ElfError(f"{path}: malformed module: {type(exc).__name__}: {exc}") from None


_SHDR = struct.Struct("<IIQQQQIIQQ")  # name type flags addr offset size link info addralign entsize
SHT_NOBITS_NUM, SHT_SYMTAB_NUM, SHT_RELA_NUM, SHT_REL_NUM = 8, 2, 4, 9
MAX_SECTIONS = 4096


def _check_section_table(data: bytes, path: str) -> None:
    """Bounds pyelftools does not check: every section header, and the bytes each section
    claims, lie inside the file; symbol and relocation tables have the x86-64 entry size; links
    name real sections; alignments are powers of two.  Keeps every later loop bounded by the
    file's size."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shnum == 0 or shnum > MAX_SECTIONS:
        raise ElfError(f"{path}: {shnum} sections (expected 1 to {MAX_SECTIONS})")
    if shentsize != _SHDR.size:
        raise ElfError(f"{path}: section header size {shentsize}, expected {_SHDR.size}")
    if shoff + shnum * shentsize > len(data):
        raise ElfError(f"{path}: section header table [{shoff:#x}+{shnum}x{shentsize}] runs past the end of the file")
    if shstrndx >= shnum:
        raise ElfError(f"{path}: section name table index {shstrndx} out of range ({shnum} sections)")
    for index in range(shnum):
        _, kind, _, _, offset, size, link, info, align, entsize = _SHDR.unpack_from(data, shoff + index * shentsize)
        where = f"{path}: section {index}"
        if kind != SHT_NOBITS_NUM and offset + size > len(data):
            raise ElfError(f"{where} [{offset:#x}+{size:#x}] runs past the end of the file ({len(data):#x} bytes)")
        if align & (align - 1):
            raise ElfError(f"{where} has alignment {align:#x}, not a power of two")
        if kind in (SHT_SYMTAB_NUM, SHT_RELA_NUM, SHT_REL_NUM):
            if entsize != 24 and kind != SHT_REL_NUM:
                raise ElfError(f"{where}: table entry size {entsize}, expected 24")
            if link >= shnum:
                raise ElfError(f"{where} links to section {link}, which does not exist")
        if kind in (SHT_RELA_NUM, SHT_REL_NUM) and info >= shnum:
            raise ElfError(f"{where} applies to section {info}, which does not exist")


def _read_object(elf: ELFFile, data: bytes, path: str) -> ObjectFile:
    sections = []
    for index, sec in enumerate(elf.iter_sections()):
        kind, size, offset = sec["sh_type"], sec["sh_size"], sec["sh_offset"]
        if kind != "SHT_NOBITS" and sec["sh_flags"] & SHF_ALLOC:
            payload = data[offset:offset + size]  # inside the file: _check_section_table
        else:
            payload = b""
        sections.append(Section(index, printable(sec.name), kind, sec["sh_flags"], sec["sh_addr"], size,
                                max(sec["sh_addralign"], 1), payload))
    symbols = _symbols(elf, path)
    relocations: dict[int, list[Relocation]] = {}
    for sec in elf.iter_sections():
        if not isinstance(sec, RelocationSection):
            continue
        if not sec.is_RELA():
            raise ElfError(f"{path}: {printable(sec.name)}: REL relocations are not supported on x86-64")
        target = sec["sh_info"]
        if not 0 < target < len(sections):
            raise ElfError(f"{path}: {printable(sec.name)} applies to section {target}, which does not exist")
        if not sections[target].flags & SHF_ALLOC:
            continue  # relocations of debug or other non-loaded sections
        relocs = []
        for rel in sec.iter_relocations():
            if rel["r_info_sym"] >= len(symbols):
                raise ElfError(f"{path}: {printable(sec.name)}: relocation at {rel['r_offset']:#x} names symbol "
                               f"{rel['r_info_sym']}, beyond the symbol table")
            relocs.append(Relocation(rel["r_offset"], rel["r_info_type"], rel["r_info_sym"], rel["r_addend"]))
        relocations.setdefault(target, []).extend(relocs)
    return ObjectFile(path, sections, symbols, relocations)
