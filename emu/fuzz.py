"""Seeded mutations of relocatable ELF files, for testing that the module loader refuses bad
modules cleanly.  Each mutation knows the ELF layout enough to aim at the structures the
loader trusts: section headers, symbols, relocations, the header's counts and offsets."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Callable

_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
SHT_SYMTAB, SHT_RELA = 2, 4
HUGE = (0x7FFFFFFF, 0xFFFFFFFF, 1 << 40, (1 << 64) - 1, 1 << 31, 0x100000)


@dataclass(frozen=True)
class SectionHeader:
    index: int
    offset_in_file: int  # where this header is
    kind: int
    offset: int
    size: int
    entsize: int


def section_headers(data: bytes) -> list[SectionHeader]:
    """The section headers of a well-formed file (the one being mutated)."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, = struct.unpack_from("<H", data, 0x3C)
    out = []
    for i in range(shnum):
        at = shoff + i * _SHDR.size
        fields = _SHDR.unpack_from(data, at)
        out.append(SectionHeader(i, at, fields[1], fields[4], fields[5], fields[9]))
    return out


def _entries(data: bytes, kind: int, size: int) -> list[int]:
    """File offsets of every entry of every section of a kind (symbols, relocations)."""
    return [sh.offset + i * size for sh in section_headers(data) if sh.kind == kind and sh.offset < len(data)
            for i in range(min(sh.size, len(data) - sh.offset) // size)]


def bit_flips(data: bytearray, rng: random.Random) -> str:
    n = rng.randint(1, 8)
    for _ in range(n):
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    return f"{n} bit flips"


def byte_run(data: bytearray, rng: random.Random) -> str:
    pos = rng.randrange(len(data))
    length = rng.randint(1, 64)
    fill = rng.choice([0x00, 0xFF, None])
    for i in range(pos, min(len(data), pos + length)):
        data[i] = rng.randrange(256) if fill is None else fill
    return f"{length} bytes overwritten at {pos:#x}"


def truncate(data: bytearray, rng: random.Random) -> str:
    keep = rng.randrange(len(data))
    del data[keep:]
    return f"truncated to {keep} bytes"


def section_header_field(data: bytearray, rng: random.Random) -> str:
    sh = rng.choice(section_headers(bytes(data)))
    fields = list(_SHDR.unpack_from(data, sh.offset_in_file))
    field = rng.randrange(len(fields))
    names = ("name", "type", "flags", "addr", "offset", "size", "link", "info", "addralign", "entsize")
    if rng.random() < 0.5:
        value = rng.choice(HUGE)
    else:
        value = rng.randrange(1 << 16)
    bits = 32 if field in (0, 1, 6, 7) else 64
    fields[field] = value & ((1 << bits) - 1)
    _SHDR.pack_into(data, sh.offset_in_file, *fields)
    return f"section {sh.index} {names[field]} = {fields[field]:#x}"


def overlapping_sections(data: bytearray, rng: random.Random) -> str:
    headers = [sh for sh in section_headers(bytes(data)) if sh.size]
    a, b = rng.sample(headers, 2)
    fields = list(_SHDR.unpack_from(data, a.offset_in_file))
    fields[4] = b.offset + rng.randrange(max(1, b.size))
    _SHDR.pack_into(data, a.offset_in_file, *fields)
    return f"section {a.index} moved over section {b.index}"


def symbol_field(data: bytearray, rng: random.Random) -> str:
    entries = _entries(bytes(data), SHT_SYMTAB, _SYM.size)
    if not entries:
        return bit_flips(data, rng)
    at = rng.choice(entries)
    name, info, other, shndx, value, size = _SYM.unpack_from(data, at)
    which = rng.choice(["shndx", "value", "name", "info", "size"])
    if which == "shndx":
        shndx = rng.choice([0, 0xFFF1, 0xFFF2, 0xFFFF, rng.randrange(64)])
    elif which == "value":
        value = rng.choice(HUGE)
    elif which == "name":
        name = rng.choice([0xFFFFFFFF, rng.randrange(1 << 16)])
    elif which == "info":
        info = rng.randrange(256)
    else:
        size = rng.choice(HUGE)
    _SYM.pack_into(data, at, name, info, other, shndx, value, size)
    return f"symbol at {at:#x}: {which}"


def relocation_field(data: bytearray, rng: random.Random) -> str:
    entries = _entries(bytes(data), SHT_RELA, _RELA.size)
    if not entries:
        return bit_flips(data, rng)
    at = rng.choice(entries)
    offset, info, addend = _RELA.unpack_from(data, at)
    which = rng.choice(["offset-out", "type", "symbol", "addend"])
    if which == "offset-out":
        offset = rng.choice([offset + 0x10000, (1 << 64) - 4, 0xFFFFFFFF])
    elif which == "type":
        info = (info & ~0xFFFFFFFF) | rng.choice([0, 3, 5, 8, 9, 24, 37, 42, rng.randrange(64)])
    elif which == "symbol":
        info = (rng.choice([0xFFFFFF, rng.randrange(1 << 12)]) << 32) | (info & 0xFFFFFFFF)
    else:
        addend = rng.choice([-(1 << 62), 1 << 40, rng.randrange(-4096, 4096)])
    _RELA.pack_into(data, at, offset, info, addend)
    return f"relocation at {at:#x}: {which}"


def header_counts(data: bytearray, rng: random.Random) -> str:
    which = rng.choice(["shoff", "shnum", "shentsize", "shstrndx", "type", "machine"])
    if which == "shoff":
        struct.pack_into("<Q", data, 0x28, rng.choice(HUGE))
    elif which == "shnum":
        struct.pack_into("<H", data, 0x3C, rng.choice([0, 0xFFFF, rng.randrange(200)]))
    elif which == "shentsize":
        struct.pack_into("<H", data, 0x3A, rng.choice([0, 1, 63, 65, 0xFFFF]))
    elif which == "shstrndx":
        struct.pack_into("<H", data, 0x3E, rng.choice([0xFFFF, rng.randrange(200)]))
    elif which == "type":
        struct.pack_into("<H", data, 0x10, rng.choice([0, 2, 3, 4, 0xFFFF]))
    else:
        struct.pack_into("<H", data, 0x12, rng.choice([3, 0x28, 0xB7, 0]))
    return f"ELF header {which}"


MUTATIONS: dict[str, Callable[[bytearray, random.Random], str]] = {
    "bit_flips": bit_flips,
    "byte_run": byte_run,
    "truncate": truncate,
    "section_header": section_header_field,
    "overlap": overlapping_sections,
    "symbol": symbol_field,
    "relocation": relocation_field,
    "header": header_counts,
}


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One seeded mutation (sometimes two stacked): the new bytes and what was done."""
    out = bytearray(data)
    done = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        name = rng.choice(list(MUTATIONS))
        if not out:
            break
        try:
            done.append(f"{name}: {MUTATIONS[name](out, rng)}")
        except (struct.error, ValueError, IndexError, OverflowError):  # the first one broke the layout
            done.append(f"bit_flips: {bit_flips(out, rng)}")
    return bytes(out), "; ".join(done)
