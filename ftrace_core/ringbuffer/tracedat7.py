"""trace.dat, version 7 (trace-cmd's Documentation/trace-cmd/trace-cmd.dat.v7.5.txt): the
contents of version 6 (tracedat.TraceDat) in sections, which may be compressed.

The file: the magic, "tracing", "7", endianness, the size of a long and the page size, as in
version 6; then the compression's name and version ("none" and "" when not compressed) and
the offset of the first OPTIONS section.  The rest is sections, one after another from there,
each with a 16-byte header (id, flags, the offset of its description in the STRINGS section,
the size of what follows), since the reader walks them by their sizes to find STRINGS:

    HEADER_INFO (16), FTRACE_EVENTS (17), EVENT_FORMATS (18), KALLSYMS (19), PRINTK (20),
    CMDLINES (21): version 6's blocks, each its own section;
    BUFFER (3): the flyrecord data, each CPU's pages at a page-aligned offset;
    OPTIONS (0): the trace clock, uname, writer and per-CPU stats of version 6, the CPU count,
        the offset of each section above, the BUFFER option (the section's offset, the instance
        name "" of the top level, the clock, the page size, and each CPU with data: its id, the
        offset and size of its data), and DONE with 0 (no further OPTIONS section);
    STRINGS (15): the sections' descriptions, NUL-terminated.

Compressed (flag 1 in a section's header; OPTIONS never is): a metadata section's body is the
compressed size, the uncompressed size and one compressed block; each CPU's data in BUFFER is a
count of chunks, then per chunk its compressed size, its uncompressed size (whole pages, at
most CHUNK_PAGES of them) and the compressed block (trace-cmd's tracecmd_compress_copy_from()
format, read back by tracecmd_load_chunks_info()).  Each block is a whole stream of the named
algorithm: "zlib" (zlib.compress(), which trace-cmd's zlib plugin takes with uncompress())
and "zstd" (a zstd frame) when this Python can make one.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO, Callable

from ..errors import FtraceError
from .page import PAGE_SIZE
from .tracedat import MAGIC, TraceDat

FILE_VERSION = 7
VERSIONS = (6, 7)
# enum tracecmd_option_id (trace-cmd's trace-cmd-private.h): sections and options share ids.
OPTION_DONE, OPTION_CPUSTAT, OPTION_BUFFER = 0, 2, 3
OPTION_CPUCOUNT, OPTION_STRINGS = 8, 15
SECTION_HEADER_INFO, SECTION_FTRACE_EVENTS, SECTION_EVENT_FORMATS = 16, 17, 18
SECTION_KALLSYMS, SECTION_PRINTK, SECTION_CMDLINES = 19, 20, 21
SECTION_COMPRESSED = 1  # TRACECMD_SEC_FL_COMPRESS
#: Pages a compressed chunk of a CPU's data holds at most (trace-output.c's PAGES_IN_CHUNK).
CHUNK_PAGES = 10


@dataclass(frozen=True)
class Codec:
    """A compression algorithm as the file names it: the name and version written in the
    file's header, and a function making one whole compressed block of bytes."""

    name: str
    version: str
    compress: Callable[[bytes], bytes]


@lru_cache(maxsize=None)
def _zstd() -> Codec | None:
    """zstd from a module when one is importable (compression.zstd of Python 3.14, or the
    zstandard package), else from the zstd program on PATH (its frames, like trace-cmd's own,
    carry no content size, which the reader does not need); None without either."""
    try:
        from compression import zstd as stdlib_zstd  # type: ignore[import-not-found]

        return Codec("zstd", stdlib_zstd.zstd_version, stdlib_zstd.compress)
    except ImportError:
        pass
    try:
        import zstandard  # type: ignore[import-not-found]

        return Codec("zstd", ".".join(map(str, zstandard.ZSTD_VERSION)), zstandard.ZstdCompressor().compress)
    except ImportError:
        pass
    program = shutil.which("zstd")
    if program is None:
        return None
    banner = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30).stdout
    version = next((w.lstrip("v").rstrip(",") for w in banner.split() if w[:2] in ("v1", "v2")), "1")

    def compress(data: bytes) -> bytes:
        done = subprocess.run([program, "-q", "-c"], input=data, capture_output=True, timeout=60)
        if done.returncode != 0:
            raise FtraceError(f"zstd failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    return Codec("zstd", version, compress)


#: The compressions offered: "none", and the algorithms trace-cmd's plugins read.
COMPRESSIONS = ("none", "zlib", "zstd")


def codec(compression: str | None) -> Codec | None:
    """The codec for a compression's name (None for "none"); a clear error when unknown or not
    available here."""
    if compression in (None, "none"):
        return None
    if compression == "zlib":
        return Codec("zlib", zlib.ZLIB_VERSION, lambda data: zlib.compress(data, 9))
    if compression == "zstd":
        found = _zstd()
        if found is None:
            raise FtraceError("compression zstd: this Python has no zstd module (compression.zstd, zstandard) "
                              "and there is no zstd program on PATH; use zlib")
        return found
    raise FtraceError(f"compression {compression!r}: expected one of {', '.join(COMPRESSIONS)}")


def check_format(version: int, compression: str | None) -> None:
    """Refuse a version or compression the writers do not make (before anything runs)."""
    if version not in VERSIONS:
        raise FtraceError(f"trace.dat version {version}: expected one of {', '.join(map(str, VERSIONS))}")
    if compression not in (None, *COMPRESSIONS):
        raise FtraceError(f"compression {compression!r}: expected one of {', '.join(COMPRESSIONS)}")
    if version == 6 and compression not in (None, "none"):
        raise FtraceError(f"compression {compression}: trace.dat version 6 is never compressed (use version 7)")


def write_v7(contents: TraceDat, out: BinaryIO, compression: str | None = None) -> int:
    """contents as a version 7 file, to out; its size."""
    contents.check_pages()
    zip_ = codec(compression)
    flags = SECTION_COMPRESSED if zip_ else 0
    strings = bytearray()

    def string(text: str) -> int:
        at = len(strings)
        strings.extend(text.encode() + b"\0")
        return at

    def section_header(section: int, description: str, size: int, section_flags: int = flags) -> bytes:
        return struct.pack("<HHIQ", section, section_flags, string(description), size)

    def block(data: bytes) -> bytes:
        """A section's body: as is, or the sizes and one compressed block."""
        if not zip_:
            return data
        packed = zip_.compress(data)
        return struct.pack("<II", len(packed), len(data)) + packed

    name, version = (zip_.name, zip_.version) if zip_ else ("none", "")
    head = MAGIC + f"{FILE_VERSION}\0".encode() + bytes([0, 8]) + struct.pack("<I", PAGE_SIZE)
    head += f"{name}\0{version}\0".encode()
    options_at = len(head)  # the first OPTIONS section's offset goes here, once known
    file = bytearray(head + bytes(8))
    offsets: list[tuple[int, int]] = []  # (section id, offset) for the OPTIONS section
    for section, description, data in (
            (SECTION_HEADER_INFO, "headers", contents.header_info()),
            (SECTION_FTRACE_EVENTS, "ftrace events", contents.ftrace_events()),
            (SECTION_EVENT_FORMATS, "events format", contents.event_formats()),
            (SECTION_KALLSYMS, "kallsyms", contents.kallsyms_data()),
            (SECTION_PRINTK, "printk", contents.printk_data()),
            (SECTION_CMDLINES, "command lines", contents.cmdlines_data())):
        body = block(data)
        offsets.append((section, len(file)))
        file += section_header(section, description, len(body)) + body

    # BUFFER: after its header, each CPU's data page-aligned (the size field patched after).
    buffer_at = len(file)
    file += section_header(OPTION_BUFFER, "buffer flyrecord ", 0)
    cpus: list[tuple[int, int, int]] = []  # (cpu, offset, size) of each CPU with data
    for cpu, pages in enumerate(contents.cpu_pages):
        if not pages:
            continue  # as trace-cmd does, a CPU without data is left out of the BUFFER option
        file += bytes(-len(file) % PAGE_SIZE)
        start = len(file)
        if zip_:
            chunks = [b"".join(pages[i:i + CHUNK_PAGES]) for i in range(0, len(pages), CHUNK_PAGES)]
            file += struct.pack("<I", len(chunks))
            for chunk in chunks:
                file += block(chunk)
        else:
            for page in pages:
                file += page
        cpus.append((cpu, start, len(file) - start))
    struct.pack_into("<Q", file, buffer_at + 8, len(file) - buffer_at - 16)

    options = [(option, text.encode() + b"\0") for option, text in contents.text_options()]
    options.append((OPTION_CPUCOUNT, struct.pack("<I", len(contents.cpu_pages))))
    options += [(section, struct.pack("<Q", at)) for section, at in offsets]
    buffer = struct.pack("<Q", buffer_at) + b"\0" + contents.clock_in_use().encode() + b"\0"
    buffer += struct.pack("<II", PAGE_SIZE, len(cpus))
    buffer += b"".join(struct.pack("<IQQ", cpu, at, size) for cpu, at, size in cpus)
    options.append((OPTION_BUFFER, buffer))
    options.append((OPTION_DONE, struct.pack("<Q", 0)))
    body = b"".join(struct.pack("<HI", option, len(data)) + data for option, data in options)
    struct.pack_into("<Q", file, options_at, len(file))
    file += section_header(OPTION_DONE, "options", len(body), 0) + body

    # STRINGS last, holding its own description too.
    description = string("strings")
    body = block(bytes(strings))
    file += struct.pack("<HHIQ", OPTION_STRINGS, flags, description, len(body)) + body
    out.write(file)
    return len(file)
