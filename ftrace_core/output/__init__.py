"""Traces as people and tools read them: the kernel's `trace` text for the function tracer
(text) and the function_graph tracer (graph), printed as the trace options say
(TraceFormat), and machine-readable JSON lines and Chrome trace events (machine)."""

from .graph import GRAPH_HEADER, format_graph, graph_duration, graph_header
from .machine import entry_record, format_chrome, format_json_lines
from .text import (
    DEFAULT_FORMAT, GRAPH_DEFAULT_FLAGS, Header, TraceFormat, buffer_header, format_entries, format_lost,
    format_trace, trace_header,
)

__all__ = [
    "DEFAULT_FORMAT", "GRAPH_DEFAULT_FLAGS", "GRAPH_HEADER", "Header", "TraceFormat", "buffer_header",
    "entry_record", "format_chrome", "format_entries", "format_graph", "format_json_lines", "format_lost",
    "format_trace", "graph_duration", "graph_header", "trace_header",
]
