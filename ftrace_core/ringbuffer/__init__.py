"""The kernel's ring buffer in its binary form: pages and events (page), the ftrace events'
layouts and format files (events), and trace.dat files for trace-cmd and KernelShark
(tracedat)."""

from .events import EntryEncoder, FtraceEvent, ftrace_events, header_event, header_page
from .page import PAGE_SIZE, PageFormatError, PageWriter, decode_page, decode_pages, encode_pages, read_page
from .tracedat import TraceDat, write_tracedat

__all__ = ["EntryEncoder", "FtraceEvent", "PAGE_SIZE", "PageFormatError", "PageWriter", "TraceDat", "decode_page",
           "decode_pages", "encode_pages", "ftrace_events", "header_event", "header_page", "read_page",
           "write_tracedat"]
