"""Trace output: the kernel's `trace` text (function and function_graph, v4.4-v4.8.17 with irq-info),
JSON lines, and Chrome trace-event JSON."""

from __future__ import annotations

import json
from typing import Callable, Iterable

from .tracer import GraphEntry, PrintEntry, RingBuffer, TraceEntry

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
    head = f"{entry.comm:>16}-{entry.pid:<5d} [{entry.cpu:03d}] .... {secs:5d}.{usecs:06d}: "
    if isinstance(entry, PrintEntry):  # trace_print_print(): the ip by name, then the text
        return f"{head}tracing_mark_write: {entry.text}"
    line = head + name_ip(entry.ip)
    if entry.parent_ip:
        line += f" <-{name_ip(entry.parent_ip)}"
    return line + "\n"


def format_lost(cpu: int, lost: int) -> str:
    return f"CPU:{cpu} [LOST {lost} EVENTS]\n"


def format_entries(entries: Iterable[TraceEntry], name_ip: Callable[[int], str], lost: list[int]) -> str:
    """Event lines; before a CPU's first surviving event, how many of its events were lost."""
    out = []
    pending = {cpu: n for cpu, n in enumerate(lost) if n}
    for e in entries:
        if e.cpu in pending:
            out.append(format_lost(e.cpu, pending.pop(e.cpu)))
        out.append(format_entry(e, name_ip))
    out.extend(format_lost(cpu, n) for cpu, n in sorted(pending.items()))
    return "".join(out)


def format_trace(tracer: str, buffer: RingBuffer, nr_cpus: int, ftrace_dead: bool,
                 name_ip: Callable[[int], str]) -> str:
    """The `trace` file: its header counts what was lost (entries-in-buffer/entries-written);
    the non-consuming iterator prints no LOST lines (v4.4-v4.8 trace.c peek_next_entry()
    asks the ring buffer for lost events only when consuming, as trace_pipe does)."""
    return trace_header(tracer, buffer, nr_cpus, ftrace_dead) + format_entries(buffer.entries(), name_ip,
                                                                                [0] * nr_cpus)


# -- function_graph ---------------------------------------------------------------------------

GRAPH_HEADER = (
    "# CPU  DURATION                  FUNCTION CALLS\n"
    "# |     |   |                     |   |   |   |\n"
)
_MARKS = ((1_000_000_000, "$"), (100_000_000, "@"), (10_000_000, "*"), (1_000_000, "#"), (100_000, "!"),
          (10_000, "+"))


def graph_duration(ns: int) -> str:
    """trace_print_graph_duration() with its overhead mark: 14 columns before the bar."""
    mark = next((m for limit, m in _MARKS if ns > limit), " ")
    usecs = str(ns // 1000)
    text = usecs
    if len(usecs) < 7:
        text += "." + f"{ns % 1000:03d}"[: 7 - len(usecs)]
    text += " us "
    return f"{mark} " + text + " " * max(0, 8 - (len(text) - 4))


def format_graph(entries: list, name_ip: Callable[[int], str], nr_cpus: int, tracer: str = "function_graph",
                 ftrace_dead: bool = False) -> str:
    """The function_graph tracer's trace: `CPU) DURATION | func() {`, leaves as `func();`."""
    width = len(str(max(nr_cpus - 1, 0)))
    lines: list[tuple[int, int, str]] = []  # (ts, order, text) per CPU, merged by time
    per_cpu: dict[int, list] = {}
    for e in entries:
        per_cpu.setdefault(e.cpu, []).append(e)
    for cpu, evs in per_cpu.items():
        i = 0
        depth = 0  # of the innermost open function, for a comment's indentation
        while i < len(evs):
            e = evs[i]
            prefix = f" {cpu:>{width}}) "
            if isinstance(e, PrintEntry):  # print_graph_comment(): `/* text */` at the depth
                pad = " " * ((depth + 1) * 2) if depth > 0 else ""
                lines.append((e.ts, cpu, f"{prefix}{' ' * 14}|  {pad}/* {e.text.rstrip(chr(10))} */"))
                i += 1
                continue
            indent = "  " * e.depth
            nxt = evs[i + 1] if i + 1 < len(evs) else None
            if isinstance(e, GraphEntry):
                depth = e.depth if e.exit else e.depth + 1
            if not isinstance(e, GraphEntry):
                i += 1  # a function-tracer event left from before: not part of the graph
                continue
            elif not e.exit and nxt is not None and nxt.exit and nxt.func == e.func and nxt.depth == e.depth:
                text = f"{prefix}{graph_duration(nxt.duration)}|  {indent}{name_ip(e.func)}();"
                depth = e.depth  # a leaf opens nothing
                i += 2
            elif not e.exit:
                text = f"{prefix}{' ' * 14}|  {indent}{name_ip(e.func)}() {{"
                i += 1
            else:
                text = f"{prefix}{graph_duration(e.duration)}|  {indent}}}"
                i += 1
            lines.append((e.ts, cpu, text))
    lines.sort(key=lambda item: (item[0], item[1]))
    head = f"# tracer: {tracer}\n#\n" + (CORRUPTED_WARNING if ftrace_dead else "") + GRAPH_HEADER
    return head + "".join(text + "\n" for _, _, text in lines)


# -- machine-readable formats ------------------------------------------------------------------

Describe = Callable[[int], "tuple[str, str | None]"]  # ip -> (symbol, module or None)


def entry_record(e, describe: Describe) -> dict:
    """One event as a JSON object: ts (virtual ns), cpu, task, pid, ip, symbol, parent_ip,
    parent_symbol, module; function_graph events add type (entry/exit), depth, duration_ns."""
    if isinstance(e, PrintEntry):
        return {"type": "print", "ts": e.ts, "cpu": e.cpu, "task": e.comm, "pid": e.pid, "text": e.text}
    symbol, module = describe(e.ip)
    parent_symbol, _ = describe(e.parent_ip) if e.parent_ip else (None, None)
    rec = {"ts": e.ts, "cpu": e.cpu, "task": e.comm, "pid": e.pid, "ip": f"{e.ip:#x}", "symbol": symbol,
           "parent_ip": f"{e.parent_ip:#x}", "parent_symbol": parent_symbol, "module": module}
    if hasattr(e, "exit"):
        rec.update({"type": "exit" if e.exit else "entry", "depth": e.depth})
        if e.exit:
            rec["duration_ns"] = e.duration
    return rec


def format_json_lines(entries: Iterable, describe: Describe, lost: list[int] | None = None) -> str:
    """One JSON object a line; first, for each CPU that lost events, a record of the loss
    ({"type": "lost", "cpu": N, "events": M}: the oldest M of that CPU's events are gone)."""
    head = "".join(json.dumps({"type": "lost", "cpu": cpu, "events": n}) + "\n"
                   for cpu, n in enumerate(lost or []) if n)
    return head + "".join(json.dumps(entry_record(e, describe)) + "\n" for e in entries)


def format_chrome(entries: Iterable, describe: Describe, nr_cpus: int) -> str:
    """Chrome trace-event JSON (chrome://tracing, Perfetto): one track per CPU named by
    metadata events; function events are instants, function_graph entries and exits B/E
    pairs, kept properly nested per track."""
    events: list[dict] = [{"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "ftrace-emu"}}]
    for cpu in range(nr_cpus):
        events.append({"ph": "M", "name": "thread_name", "pid": 1, "tid": cpu, "args": {"name": f"CPU {cpu}"}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": 1, "tid": cpu, "args": {"sort_index": cpu}})
    open_stacks: dict[int, list[str]] = {}
    last_ts: dict[int, float] = {}
    for e in entries:
        if isinstance(e, PrintEntry):
            events.append({"ph": "i", "s": "t", "name": e.text.rstrip("\n"), "cat": "print", "pid": 1,
                           "tid": e.cpu, "ts": e.ts / 1000.0, "args": {"task": f"{e.comm}-{e.pid}"}})
            continue
        symbol, module = describe(e.ip)
        name = f"{symbol} [{module}]" if module else symbol
        ts = e.ts / 1000.0  # the format's unit is microseconds
        last_ts[e.cpu] = ts
        args = {"task": f"{e.comm}-{e.pid}", "ip": f"{e.ip:#x}"}
        if not hasattr(e, "exit"):
            parent, _ = describe(e.parent_ip) if e.parent_ip else ("", None)
            events.append({"ph": "i", "s": "t", "name": name, "cat": "function", "pid": 1, "tid": e.cpu,
                           "ts": ts, "args": {**args, "parent": parent}})
            continue
        stack = open_stacks.setdefault(e.cpu, [])
        if not e.exit:
            stack.append(name)
            events.append({"ph": "B", "name": name, "cat": "function_graph", "pid": 1, "tid": e.cpu, "ts": ts,
                           "args": args})
        elif stack and stack[-1] == name:
            stack.pop()
            events.append({"ph": "E", "name": name, "cat": "function_graph", "pid": 1, "tid": e.cpu, "ts": ts})
        # an exit whose entry fell out of the buffer has nothing to close
    for cpu, stack in open_stacks.items():  # still running when the trace was read
        while stack:
            events.append({"ph": "E", "name": stack.pop(), "pid": 1, "tid": cpu, "ts": last_ts.get(cpu, 0.0)})
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}, indent=None) + "\n"
