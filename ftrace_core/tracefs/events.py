"""The ring buffer's binary side of tracefs, what trace-cmd record reads: events/header_page,
events/header_event and events/ftrace/NAME/{format,id} (create_event_toplevel_files() and
event_create_dir(), kernel/trace/trace_events.c), per_cpu/cpuN/trace_pipe_raw
(tracing_buffers_read(), kernel/trace/trace.c) and printk_formats (kernel/trace/trace_printk.c),
as the v4.5.0 and v4.8.17 trees make them.

Of an ftrace event's directory only `format` is modelled, and `id` where the tree has one
(event_create_dir() makes it for events with a ->reg: only `function`); `filter`, `trigger`
and the subsystem's `filter`/`enable` are not served.  trace_pipe_raw hands out one page a
read, consumed; an empty buffer gives nothing (the mount then blocks, or EAGAIN with
O_NONBLOCK, as tracing_buffers_read() does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ringbuffer.events import EntryEncoder, ftrace_events, header_event, header_page
from ..ringbuffer.page import encode_pages

if TYPE_CHECKING:
    from .array import TraceArray

#: The files a trace array gets here, for checking names before anything runs (2 CPUs).
READABLE = ("events/header_page", "events/header_event", "printk_formats",
            *(f"events/ftrace/{e.name}/{file}" for e in ftrace_events(False)
              for file in (("format", "id") if e.has_id_file else ("format",))),
            *(f"per_cpu/cpu{cpu}/trace_pipe_raw" for cpu in (0, 1)))


class RawPipe:
    """per_cpu/cpuN/trace_pipe_raw of one trace array: each read takes the CPU's oldest events
    that fill one page (ring_buffer_read_page()), the events lost since the last consuming
    read flagged on it, and returns the page's PAGE_SIZE bytes."""

    def __init__(self, array: "TraceArray", cpu: int, encoder: EntryEncoder):
        self.array, self.cpu, self.encoder = array, cpu, encoder
        self.write_stamp = 0  # the time of the last event handed out: the writer's write_stamp

    def read(self) -> bytes:
        buffer = self.array.buffer
        buffer.pull()
        held = buffer.cpus[self.cpu]
        if not held:
            return b""
        encode = self.encoder.encode
        pages, taken = encode_pages(((e.ts, encode(e)) for e in held), buffer.unreported[self.cpu],
                                    self.write_stamp, max_pages=1)
        self.write_stamp = held[taken - 1].ts
        buffer.consume_oldest(self.cpu, taken)
        return pages[0]


def printk_formats() -> str:
    """ftrace_formats_show(): trace_bprintk()'s formats (`0xADDR : "fmt"`) and the
    tracepoint strings; this kernel has neither trace_printk() nor tracepoint_string()."""
    return ""


def install(array: "TraceArray") -> None:
    """A trace array's files of the ring buffer's format: the top level's and each
    instance's (event_trace_add_tracer()); printk_formats only at the top."""
    system = array.system
    encoder = EntryEncoder.for_kernel(system.tree)
    add = array.add
    add("events/header_page", header_page, mode=0o444)
    add("events/header_event", header_event, mode=0o444)
    for event in ftrace_events(encoder.packed):
        add(f"events/ftrace/{event.name}/format", event.format, mode=0o444)
        if event.has_id_file:
            add(f"events/ftrace/{event.name}/id", lambda e=event: f"{e.id}\n", mode=0o444)
    for cpu in range(len(system.kernel.cpus)):
        add(f"per_cpu/cpu{cpu}/trace_pipe_raw", RawPipe(array, cpu, encoder).read, mode=0o444)
    if array.name is None:
        add("printk_formats", printk_formats, mode=0o444)
