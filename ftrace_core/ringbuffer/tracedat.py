"""trace.dat, version 6 (trace-cmd's Documentation/trace-cmd/trace-cmd.dat.v6.5.txt): what
`trace-cmd record`/`extract` write from a kernel's tracefs, written here from the emulated
system, so `trace-cmd report` and KernelShark open its traces.

The file holds, in order: the magic, "tracing", "6", endianness, the size of a long and the
page size; events/header_page and events/header_event; every events/ftrace/*/format; the other
event systems (none here); /proc/kallsyms (the kernel's symbols and the loaded modules'); the
printk formats; saved_cmdlines; the CPU count; options (the trace clock, uname, trace-cmd's
per-CPU stats); then "flyrecord" with each CPU's offset and size, and each CPU's ring-buffer
pages (trace_pipe_raw's, ftrace_core.ringbuffer.page), page-aligned.

Version 7 (tracedat7.py) holds the same contents in sections, optionally compressed:
write_tracedat(..., version=7, compression="zlib").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterable

from ..errors import FtraceError
from .events import EntryEncoder, ftrace_events, header_event, header_page
from .page import PAGE_SIZE, encode_pages

if TYPE_CHECKING:
    from ..system import System

MAGIC = b"\x17\x08\x44tracing"
FILE_VERSION = 6
# enum tracecmd_option_id (trace-cmd's lib/trace-cmd/include/private/trace-cmd-private.h)
TRACECMD_OPTION_CPUSTAT, TRACECMD_OPTION_TRACECLOCK, TRACECMD_OPTION_UNAME = 2, 4, 5
TRACECMD_OPTION_VERSION = 9
#: What the VERSION option names as the writer.
WRITER = "ftrace-emu"


@dataclass
class TraceDat:
    """What a trace.dat holds, as the texts and pages the tracefs files give."""

    header_page: str
    header_event: str
    ftrace_formats: list[str]
    kallsyms: str
    printk_formats: str
    cmdlines: str
    cpu_pages: list[list[bytes]]  # per CPU, its pages in order (each PAGE_SIZE bytes)
    trace_clock: str = ""  # the trace_clock file: "[local] global ..."
    uname: str = ""
    cpustats: list[str] = field(default_factory=list)  # per_cpu/cpuN/stats

    def check_pages(self) -> None:
        for pages in self.cpu_pages:
            for page in pages:
                if len(page) != PAGE_SIZE:
                    raise FtraceError(f"trace.dat: a ring-buffer page must be {PAGE_SIZE} bytes, got {len(page)}")

    # The metadata blocks, laid out alike in version 6 (in this order, after the file's header)
    # and version 7 (each the body of its own section).
    def header_info(self) -> bytes:
        """header_page and header_event, each its name, a NUL and a 64-bit size first."""
        head = b""
        for name, text in (("header_page", self.header_page), ("header_event", self.header_event)):
            data = text.encode()
            head += name.encode() + b"\0" + struct.pack("<Q", len(data)) + data
        return head

    def ftrace_events(self) -> bytes:
        """The count of events/ftrace/*/format files, then each with its 64-bit size."""
        return struct.pack("<I", len(self.ftrace_formats)) + b"".join(
            struct.pack("<Q", len(data)) + data for data in (fmt.encode() for fmt in self.ftrace_formats))

    @staticmethod
    def event_formats() -> bytes:
        return struct.pack("<I", 0)  # event systems besides ftrace: none in this kernel

    def kallsyms_data(self) -> bytes:
        return struct.pack("<I", len(self.kallsyms.encode())) + self.kallsyms.encode()

    def printk_data(self) -> bytes:
        return struct.pack("<I", len(self.printk_formats.encode())) + self.printk_formats.encode()

    def cmdlines_data(self) -> bytes:
        return struct.pack("<Q", len(self.cmdlines.encode())) + self.cmdlines.encode()

    def text_options(self) -> list[tuple[int, str]]:
        """The options whose data is a NUL-terminated text: trace clock, uname, version, stats."""
        options: list[tuple[int, str]] = []
        if self.trace_clock:
            options.append((TRACECMD_OPTION_TRACECLOCK, self.trace_clock))
        if self.uname:
            options.append((TRACECMD_OPTION_UNAME, self.uname))
        options.append((TRACECMD_OPTION_VERSION, WRITER))
        options += [(TRACECMD_OPTION_CPUSTAT, stats) for stats in self.cpustats]
        return options

    def clock_in_use(self) -> str:
        """The trace clock the events' times are on: trace_clock's bracketed word ("local")."""
        return next((w[1:-1] for w in self.trace_clock.split() if w.startswith("[")), "local")

    def write(self, out: BinaryIO) -> int:
        """The file (version 6), to out; its size."""
        self.check_pages()
        head = bytearray(MAGIC + f"{FILE_VERSION}\0".encode() + bytes([0, 8]) + struct.pack("<I", PAGE_SIZE))
        head += self.header_info() + self.ftrace_events() + self.event_formats()
        head += self.kallsyms_data() + self.printk_data() + self.cmdlines_data()
        head += struct.pack("<I", len(self.cpu_pages)) + b"options  \0"
        for option, text in self.text_options():
            data = text.encode() + b"\0"
            head += struct.pack("<HI", option, len(data)) + data
        head += struct.pack("<H", 0) + b"flyrecord\0"
        clock = b""
        if self.trace_clock:  # after the CPUs' offsets, the clock in use: "[local]"
            chosen = f"[{self.clock_in_use()}]"
            clock = struct.pack("<Q", len(chosen)) + chosen.encode()
        offset = -(-(len(head) + 16 * len(self.cpu_pages) + len(clock)) // PAGE_SIZE) * PAGE_SIZE
        for pages in self.cpu_pages:
            size = PAGE_SIZE * len(pages)
            head += struct.pack("<QQ", offset if size else 0, size)
            offset += size
        head += clock
        out.write(head)
        written = len(head)
        pad = -written % PAGE_SIZE
        out.write(bytes(pad))
        written += pad
        for pages in self.cpu_pages:
            for page in pages:
                out.write(page)
                written += len(page)
        return written


def kallsyms_text(kallsyms) -> str:
    """/proc/kallsyms: "address type name", modules' symbols with "\\t[module]"; a loading
    module's symbols are not there until it is formed (s_show() and module_get_kallsym())."""
    lines = []
    for sym in kallsyms:
        if sym.module in kallsyms.unformed:
            continue
        kind = "T" if sym.is_text else "D"
        if sym.module:
            lines.append(f"{sym.addr:016x} {kind.lower()} {sym.name}\t[{sym.module}]\n")
        else:
            lines.append(f"{sym.addr:016x} {kind} {sym.name}\n")
    return "".join(lines)


def cmdlines_text(saved: Iterable[tuple[int, str]], entries: Iterable) -> str:
    """saved_cmdlines, completed with the task of every event kept: this machine's events
    carry their task's name, which is what `cat trace` prints (pid 0 is <idle> by itself)."""
    names: dict[int, str] = dict(saved)
    for e in entries:
        if e.pid and e.pid not in names:
            names[e.pid] = e.comm
    return "".join(f"{pid} {comm}\n" for pid, comm in names.items())


def cpu_pages(buffer, encoder: EntryEncoder, nr_cpus: int, notes: Iterable = ()) -> list[list[bytes]]:
    """Each CPU's events as a reader of trace_pipe_raw would take them now (without taking
    them): its pages, the events lost since the last consuming read flagged on the first;
    notes (print events of the tool's own, see write_tracedat()) merged in by time."""
    encode = encoder.encode
    notes = list(notes)
    pages = []
    for cpu in range(nr_cpus):
        events = buffer.entries(cpu) + [n for n in notes if n.cpu == cpu]
        events.sort(key=lambda e: e.ts)
        pages.append(encode_pages(((e.ts, encode(e)) for e in events), buffer.unreported[cpu])[0])
    return pages


def collect(system: "System", array=None, notes: Iterable = ()) -> TraceDat:
    """A trace array's buffer (the top level's by default) and the kernel's metadata."""
    notes = list(notes)
    array = array if array is not None else system.tracefs.top
    tree = system.tree
    buffer = array.buffer
    nr_cpus = len(system.kernel.cpus)
    formats = [event.format() for event in ftrace_events(EntryEncoder.for_kernel(tree).packed)]
    saved = system.tracefs.top.buffers.cmdlines.slots.items()
    return TraceDat(
        header_page=header_page(), header_event=header_event(), ftrace_formats=formats,
        kallsyms=kallsyms_text(system.kernel.kallsyms), printk_formats="",
        cmdlines=cmdlines_text(saved, buffer.entries() + list(notes)),
        cpu_pages=cpu_pages(buffer, EntryEncoder.for_kernel(tree), nr_cpus, notes),
        trace_clock=system.tracefs.read(array.prefix + "trace_clock"),
        uname=f"Linux ftrace-emu {tree.uname} x86_64",  # add_uname(): sysname nodename release machine
        cpustats=[f"CPU: {cpu}\n" + array.buffers.stats(cpu) for cpu in range(nr_cpus)])


def write_tracedat(system: "System", path: str | Path, array=None, notes: Iterable = (), version: int = 6,
                   compression: str | None = None) -> int:
    """The trace array's trace as trace.dat at path; the bytes written.  notes are print
    events that were never in the kernel's buffer (the tool's own account of a run, each
    text starting "ftrace-emu: "), for a viewer to show beside the kernel's events.
    version 7 writes sections (tracedat7.py), compressed with compression ("zlib", "zstd")."""
    from .tracedat7 import check_format, codec, write_v7

    check_format(version, compression)
    codec(compression)  # refused here, before the file is opened, when not available
    contents = collect(system, array, notes)
    with open(path, "wb") as out:
        return contents.write(out) if version == 6 else write_v7(contents, out, compression)
