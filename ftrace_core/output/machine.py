"""Machine-readable traces: JSON lines and Chrome trace-event JSON."""

from __future__ import annotations

import json
from typing import Callable, Iterable

from ..tracer import PrintEntry

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
