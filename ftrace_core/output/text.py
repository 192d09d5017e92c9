"""The function tracer's `trace` text as kernel/trace/trace.c and trace_output.c print it
(v4.4-v4.8): the header (trace_default_header(), print_trace_header()), each event's context
(trace_print_context(), trace_print_lat_context()) and body, in the normal, raw and hex
forms, as the trace options choose (TraceFormat)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from ..tracer import PrintEntry, RingBuffer, TraceEntry
from ..tracers.stacktrace import StackEntry, format_stack

#: The graph tracer's flags on at boot (tracer_flags.val in trace_functions_graph.c).
GRAPH_DEFAULT_FLAGS = frozenset({"funcgraph-cpu", "funcgraph-overhead", "funcgraph-duration", "funcgraph-irqs",
                                 "sleep-time", "graph-time"})
#: enum trace_type (kernel/trace/trace.h): what trace_nop_print() shows for an event type
#: without a printer of the form asked.
TRACE_STACK, TRACE_PRINT = 4, 5


@dataclass(frozen=True)
class TraceFormat:
    """What the trace options say about printing: the trace array's TRACE_ITER_* flags, the
    graph tracer's flags, and whether the trace clock counts nanoseconds.  The defaults are
    the kernel's at boot."""

    print_parent: bool = True
    sym_offset: bool = False
    sym_addr: bool = False
    verbose: bool = False
    raw: bool = False
    hex: bool = False
    bin: bool = False
    printk_msg_only: bool = False  # trace_printk and printk-msg-only both on
    context_info: bool = True
    latency: bool = False
    irq_info: bool = True
    in_ns: bool = True
    graph: frozenset[str] = field(default=GRAPH_DEFAULT_FLAGS)


DEFAULT_FORMAT = TraceFormat()


class Symbols(Protocol):
    """How addresses print: the bare name (seq_print_sym_short()), name+off/size [mod]
    (%pS, seq_print_sym_offset()) and name [mod] (%ps)."""

    def sym_short(self, ip: int) -> str: ...
    def format_ip(self, ip: int) -> str: ...
    def name_ip(self, ip: int) -> str: ...


@dataclass(frozen=True)
class Header:
    """What a header says of the buffer and the machine."""

    tracer: str
    entries: int  # entries-in-buffer
    written: int  # entries-written
    nr_cpus: int
    ftrace_dead: bool = False
    release: str = ""  # UTS_RELEASE, for the latency header


IRQ_HEADER = (
    "#                              _-----=> irqs-off\n"
    "#                             / _----=> need-resched\n"
    "#                            | / _---=> hardirq/softirq\n"
    "#                            || / _--=> preempt-depth\n"
    "#                            ||| /     delay\n"
    "#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION\n"
    "#              | |       |   ||||       |         |\n"
)
PLAIN_HEADER = (
    "#           TASK-PID   CPU#      TIMESTAMP  FUNCTION\n"
    "#              | |       |          |         |\n"
)
LAT_HELP_HEADER = (
    "#                  _------=> CPU#            \n"
    "#                 / _-----=> irqs-off        \n"
    "#                | / _----=> need-resched    \n"
    "#                || / _---=> hardirq/softirq \n"
    "#                ||| / _--=> preempt-depth   \n"
    "#                |||| /     delay            \n"
    "#  cmd     pid   ||||| time  |   caller      \n"
    "#     \\   /      |||||  \\    |   /         \n"
)
CORRUPTED_WARNING = (
    "# WARNING: FUNCTION TRACING IS CORRUPTED\n"
    "#          MAY BE MISSING FUNCTION EVENTS\n"
)
#: The irq/preempt flags column (trace_print_lat_fmt()): no task here runs with irqs off,
#: in an interrupt, or with preemption disabled when it is traced.
LAT_FLAGS = "...."


def tracer_banner(head: Header) -> str:
    """s_show()'s first lines: the tracer, and test_ftrace_alive()'s warning."""
    return f"# tracer: {head.tracer}\n#\n" + (CORRUPTED_WARNING if head.ftrace_dead else "")


def latency_header(head: Header) -> str:
    """print_trace_header(): the latency tracers' summary, printed for any tracer with
    latency-format.  No latency is measured (0 us, CPU#0, an empty task), and the guest
    never preempts kernel code (tasks switch only in schedule()): M:server."""
    return (f"# {head.tracer} latency trace v1.1.5 on {head.release}\n"
            "# --------------------------------------------------------------------\n"
            f"# latency: 0 us, #{head.entries}/{head.written}, CPU#0 | (M:server VP:0, KP:0, SP:0 HP:0"
            f" #P:{head.nr_cpus})\n"
            "#    -----------------\n"
            "#    | task: -0 (uid:0 nice:0 policy:0 rt_prio:0)\n"
            "#    -----------------\n"
            "#\n")


def trace_header(head: Header, fmt: TraceFormat = DEFAULT_FORMAT) -> str:
    """trace_default_header(): nothing without context-info; the latency header when the
    buffer has something; else the entry counts and the column legend (none if verbose)."""
    text = tracer_banner(head)
    if not fmt.context_info:
        return text
    if fmt.latency:
        if head.entries:
            text += latency_header(head)
            if not fmt.verbose:
                text += LAT_HELP_HEADER
        return text
    if not fmt.verbose:
        text += (f"# entries-in-buffer/entries-written: {head.entries}/{head.written}   #P:{head.nr_cpus}\n#\n"
                 + (IRQ_HEADER if fmt.irq_info else PLAIN_HEADER))
    return text


def _mark(ns: int) -> str:
    """trace_find_mark(): how long, at a glance."""
    for limit, mark in ((1_000_000_000, "$"), (100_000_000, "@"), (10_000_000, "*"), (1_000_000, "#"),
                        (100_000, "!"), (10_000, "+")):
        if ns > limit:
            return mark
    return " "


class FunctionPrinter:
    """print_trace_line() for the function tracer's events, in the order read: it keeps
    the iterator's state (the index, the buffer's start time) that contexts print."""

    def __init__(self, symbols: Symbols, fmt: TraceFormat = DEFAULT_FORMAT, time_start: int = 0):
        self.symbols, self.fmt, self.time_start = symbols, fmt, time_start

    def ip_sym(self, ip: int) -> str:
        """seq_print_ip_sym()."""
        if not ip:
            return "0"
        text = self.symbols.format_ip(ip) if self.fmt.sym_offset else self.symbols.sym_short(ip)
        return text + (f" <{ip:016x}>" if self.fmt.sym_addr else "")

    def context(self, e, idx: int, next_ts: int | None) -> str:
        fmt = self.fmt
        if fmt.latency:
            return self._lat_context(e, idx, e.ts if next_ts is None else next_ts)
        head = f"{e.comm:>16}-{e.pid:<5d} [{e.cpu:03d}] " + (LAT_FLAGS if fmt.irq_info else "")
        if fmt.in_ns:
            return head + f" {e.ts // 1_000_000_000:5d}.{e.ts % 1_000_000_000 // 1000:06d}: "
        return head + f" {e.ts:12d}: "

    def _lat_context(self, e, idx: int, next_ts: int) -> str:
        """trace_print_lat_context() and lat_print_timestamp()."""
        fmt = self.fmt
        abs_ts, rel_ts = e.ts - self.time_start, next_ts - e.ts
        if fmt.in_ns:
            abs_ts, rel_ts = abs_ts // 1000, rel_ts // 1000
        if fmt.verbose:
            head = f"{e.comm:>16} {e.pid:5d} {e.cpu:3d} 0 {0:08x} {idx:08x} "
            if fmt.in_ns:
                return head + (f"[{e.ts // 1000:08x}] {abs_ts // 1000}.{abs_ts % 1000:03d}ms "
                               f"(+{rel_ts // 1000}.{rel_ts % 1000:03d}ms): ")
            return head + f"[{e.ts:016x}] {abs_ts} (+{rel_ts}): "
        head = f"{e.comm[:8]:>8}-{e.pid:<5d} {e.cpu:3d}{LAT_FLAGS}"
        if fmt.in_ns:
            return head + f" {abs_ts:4d}us{_mark(rel_ts * 1000)}: "
        return head + f" {abs_ts:4d}: "

    def line(self, e, idx: int = 0, next_ts: int | None = None) -> str:
        """print_trace_line(): a print event's text alone with printk-msg-only; else the
        binary, hex, raw or normal form, each with the context when context-info is on.
        Only the function event has raw, hex and binary printers; the others print
        trace_nop_print()'s `type: N` there."""
        fmt = self.fmt
        printed = isinstance(e, PrintEntry)
        other = printed or isinstance(e, StackEntry)
        if printed and fmt.printk_msg_only:  # trace_print_printk_msg_only()
            return e.text
        if fmt.bin:  # print_bin_fmt(): the fields' bytes as they are in memory
            head = struct.pack("<iiQ", e.pid, e.cpu, e.ts) if fmt.context_info else b""
            body = f"type: {_type(e)}\n".encode() if other else struct.pack("<QQ", e.ip, e.parent_ip)
            return (head + body).decode("utf-8", "surrogateescape")
        if fmt.hex:  # print_hex_fmt(): each field in hex, as wide as its type
            head = f"{e.pid & 0xFFFFFFFF:08x} {e.cpu:08x} {e.ts:016x} " if fmt.context_info else ""
            body = f"type: {_type(e)}\n" if other else f"{e.ip:016x} {e.parent_ip:016x} "
            return head + body + "\n"
        if fmt.raw:  # print_raw_fmt(); trace_print_raw() for a print event
            head = f"{e.pid} {e.cpu} {e.ts} " if fmt.context_info else ""
            if printed:
                return head + f"# {e.ip:x} {e.text}"
            return head + (f"type: {_type(e)}\n" if other else f"{e.ip:x} {e.parent_ip:x}\n")
        head = self.context(e, idx, next_ts) if fmt.context_info else ""
        if printed:  # trace_print_print(): the writer by name, then the text
            return f"{head}tracing_mark_write: {e.text}"
        if isinstance(e, StackEntry):  # trace_stack_print()
            return head + format_stack(e.callers, self.ip_sym)
        text = head + self.ip_sym(e.ip)
        if fmt.print_parent and e.parent_ip:
            text += " <-" + self.ip_sym(e.parent_ip)
        return text + "\n"


def _type(e) -> int:
    """enum trace_type of an event without raw/hex/binary printers."""
    return TRACE_PRINT if isinstance(e, PrintEntry) else TRACE_STACK


def format_lost(cpu: int, lost: int) -> str:
    return f"CPU:{cpu} [LOST {lost} EVENTS]\n"


def format_entries(entries: Iterable[TraceEntry], symbols: Symbols, lost: list[int],
                   fmt: TraceFormat = DEFAULT_FORMAT, time_start: int = 0) -> str:
    """Event lines; before a CPU's first surviving event, how many of its events were lost."""
    printer = FunctionPrinter(symbols, fmt, time_start)
    entries = list(entries)
    out = []
    pending = {cpu: n for cpu, n in enumerate(lost) if n}
    for i, e in enumerate(entries):
        if e.cpu in pending:
            out.append(format_lost(e.cpu, pending.pop(e.cpu)))
        out.append(printer.line(e, i, entries[i + 1].ts if i + 1 < len(entries) else None))
    out.extend(format_lost(cpu, n) for cpu, n in sorted(pending.items()))
    return "".join(out)


def buffer_header(tracer: str, buffer: RingBuffer, nr_cpus: int, ftrace_dead: bool, release: str = "") -> Header:
    return Header(tracer, buffer.entries_in_buffer, buffer.entries_written, nr_cpus, ftrace_dead, release)


def format_trace(tracer: str, buffer: RingBuffer, nr_cpus: int, ftrace_dead: bool, symbols: Symbols,
                 fmt: TraceFormat = DEFAULT_FORMAT, release: str = "") -> str:
    """The `trace` file: its header counts what was lost (entries-in-buffer/entries-written);
    the non-consuming iterator prints no LOST lines (v4.4-v4.8 trace.c peek_next_entry()
    asks the ring buffer for lost events only when consuming, as trace_pipe does)."""
    head = buffer_header(tracer, buffer, nr_cpus, ftrace_dead, release)
    return trace_header(head, fmt) + format_entries(buffer.entries(), symbols, [0] * nr_cpus, fmt,
                                                    buffer.time_start)

