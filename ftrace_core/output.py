"""The `trace` file's text, as the kernel prints it (4.8, irq-info on)."""

from __future__ import annotations

from typing import Callable, Iterable

from .tracer import RingBuffer, TraceEntry

IRQ_HEADER = (
    "#                              _-----=> irqs-off\n"
    "#                             / _----=> need-resched\n"
    "#                            | / _---=> hardirq/softirq\n"
    "#                            || / _--=> preempt-depth\n"
    "#                            ||| /     delay\n"
    "#           TASK-PID   CPU#  ||||    TIMESTAMP  FUNCTION\n"
    "#              | |       |   ||||       |         |\n"
)
CORRUPTED_WARNING = (
    "# WARNING: FUNCTION TRACING IS CORRUPTED\n"
    "#          MAY BE MISSING FUNCTION EVENTS\n"
)


def trace_header(tracer: str, buffer: RingBuffer, nr_cpus: int, ftrace_dead: bool) -> str:
    head = f"# tracer: {tracer}\n#\n"
    if ftrace_dead:
        head += CORRUPTED_WARNING
    head += (f"# entries-in-buffer/entries-written: {buffer.entries_in_buffer}/{buffer.entries_written}"
             f"   #P:{nr_cpus}\n#\n")
    return head + IRQ_HEADER


def format_entry(entry: TraceEntry, name_ip: Callable[[int], str]) -> str:
    """`%16s-%-5d [%03d] .... %5lu.%06lu: func <-parent` (trace_print_context + the function
    event's output)."""
    secs, usecs = entry.ts // 1_000_000_000, (entry.ts % 1_000_000_000) // 1000
    line = f"{entry.comm:>16}-{entry.pid:<5d} [{entry.cpu:03d}] .... {secs:5d}.{usecs:06d}: {name_ip(entry.ip)}"
    if entry.parent_ip:
        line += f" <-{name_ip(entry.parent_ip)}"
    return line + "\n"


def format_lost(cpu: int, lost: int) -> str:
    return f"CPU:{cpu} [LOST {lost} EVENTS]\n"


def format_trace(tracer: str, buffer: RingBuffer, nr_cpus: int, ftrace_dead: bool,
                 name_ip: Callable[[int], str], entries: Iterable[TraceEntry] | None = None) -> str:
    out = [trace_header(tracer, buffer, nr_cpus, ftrace_dead)]
    out.extend(format_entry(e, name_ip) for e in (buffer.entries() if entries is None else entries))
    return "".join(out)
