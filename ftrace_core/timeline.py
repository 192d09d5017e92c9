"""A two-column CPU 0 / CPU 1 account of a run, like the table in the seed commit's message:
commands, lock waits, protection changes with their ranges, records added, skipped and
enabled, the fault.  Built from the run's own events (scheduler steps, protection changes,
ftrace's record events), never written by hand.
"""

from __future__ import annotations

import errno
import textwrap
from dataclasses import dataclass

from emu.cpu import Quantum
from emu.sched import Blocked, Point
from emu.schedule import Step

# Points worth a row of their own, and how to say them.
_POINT_ROWS = {
    "command": "$ {detail}",
    "add_unformed_module": "load_module: {detail}",
    "ftrace_module_init": "ftrace_module_init: {detail}",
    "complete_formation": "complete_formation: {detail}",
    "prepare_coming_module": "prepare_coming_module: {detail}",
    "do_init_module": "do_init_module: {detail} init_module()",
    "module_live": "{detail}: LIVE",
    "ftrace_release_mod": "ftrace_release_mod: {detail}",
}

_RECORD_EVENTS = {
    "added": "added",
    "breakpoint": "int3 on",
    "skip_disabled": "skipped (DISABLED)",
    "make_call": "-> call",
    "make_nop": "-> nop",
    "modify_call": "-> new call",
    "module_enable": "DISABLED cleared",
    "released": "released",
}


@dataclass
class Row:
    cpu: int
    text: str
    key: tuple | None = None  # rows with the same key on the same CPU in a row merge
    count: int = 1
    first: str = ""
    last: str = ""
    ts: int = 0  # when it happened, on the machine's clock (Timeline.now())


class Timeline:
    def __init__(self, system, nr_cpus: int = 2):
        self.system = system
        self.nr_cpus = nr_cpus
        self.rows: list[Row] = []
        self._waiting: dict[int, str] = {}
        self._holders: dict[str, int] = {}
        self._last_ts = 0

    def now(self) -> int:
        """The machine's time for a row: the furthest CPU clock, never behind the last row's
        (a CPU's clock counts its own instructions, so rows keep their order this way)."""
        ts = max(max(cpu.clock_ns for cpu in self.system.kernel.cpus), self._last_ts + 1)
        self._last_ts = ts
        return ts

    # -- collecting --------------------------------------------------------------------------
    def attach(self, scheduler=None) -> None:
        self.system.kernel.machine.protect_listeners.append(self.on_protect)
        self.system.ftrace.listeners.append(self.on_record)
        self.system.tracer.bp_listeners.append(self.on_int3)
        if scheduler is not None:
            scheduler.observers.append(self.on_step)
            self._holders = scheduler.holders

    def detach(self) -> None:
        self.system.kernel.machine.protect_listeners.remove(self.on_protect)
        self.system.ftrace.listeners.remove(self.on_record)
        self.system.tracer.bp_listeners.remove(self.on_int3)

    def on_int3(self, cpu: int, ip: int) -> None:
        self._merge(cpu, ("int3",), "hits int3", self.system.env.describe_ip(ip))

    def add(self, cpu: int, text: str) -> None:
        self.rows.append(Row(cpu, text, ts=self.now()))

    def on_step(self, step: Step) -> None:
        value = step.value
        if isinstance(value, Blocked):
            if self._waiting.get(step.cpu) != value.lock.name:
                holder = self._holders.get(value.lock.name)
                who = f" (held by CPU {holder})" if holder is not None and holder != step.cpu else ""
                self.add(step.cpu, f"waits for {value.lock.name}{who}")
                self._waiting[step.cpu] = value.lock.name
            return
        if self._waiting.pop(step.cpu, None):
            self.add(step.cpu, "gets the lock")
        if isinstance(value, Point) and value.label in _POINT_ROWS:
            self.add(step.cpu, _POINT_ROWS[value.label].format(detail=value.detail))
        elif isinstance(value, Quantum):
            self._merge(step.cpu, ("quantum",), "runs guest code", self.system.env.describe_ip(value.rip))

    def on_protect(self, lo: int, hi: int, perms, why: str) -> None:
        what = why.split(":")[0] if why else "protect"
        where = why.split(": ", 1)[1] if ": " in why else self._area_name(lo)
        self.add(self.system.kernel.current_cpu, f"{what}: {where} {lo:x}-{hi:x} {perms}")

    def on_record(self, event: str, rec, detail: str) -> None:
        cpu = self.system.kernel.current_cpu
        name = self.system.env.describe_ip(rec.ip)
        module = name.split(" [", 1)[1].rstrip("]") if " [" in name else "kernel"
        if event == "fault":
            err = errno.errorcode.get(-int(detail), detail) if detail.lstrip("-").isdigit() else detail
            self.add(cpu, f"write to {name} FAULTS (-{err})")
        elif event == "bug":
            self.add(cpu, f"ftrace_bug(): {detail}; ftrace disabled")
        elif event == "module_enable" and detail != "refs=0":
            return  # the "-> call" row that follows says it
        elif event in _RECORD_EVENTS:
            self._merge(cpu, ("rec", event, module), f"{module} records {_RECORD_EVENTS[event]}", name)

    def _merge(self, cpu: int, key: tuple, text: str, item: str) -> None:
        last = next((r for r in reversed(self.rows) if r.cpu == cpu), None)
        if last is not None and last.key == key and self.rows[-1] is last:
            last.count += 1
            last.last = item
            return
        self.rows.append(Row(cpu, text, key, 1, item, item, self.now()))

    def _area_name(self, addr: int) -> str:
        return self.system.kernel.machine.name_of(addr) or "memory"

    # -- rendering -----------------------------------------------------------------------------
    def lines(self) -> list[tuple[int, str]]:
        return [(cpu, text) for cpu, text, _ in self.stamped()]

    def stamped(self) -> list[tuple[int, str, int]]:
        """(cpu, text, ts) a row, as lines() says them."""
        out = []
        for row in self.rows:
            text = row.text
            if row.key is not None:
                if row.key[0] == "quantum":
                    text = f"runs guest code ({row.count} slice{'s' if row.count > 1 else ''})"
                elif row.key[0] == "int3":
                    where = row.first if row.count == 1 else f"{row.count} sites ({row.first} .. {row.last})"
                    text = f"hits int3 at {where}: ftrace_int3_handler skips as a nop"
                elif row.count == 1:
                    text = f"{row.first}: {_RECORD_EVENTS[row.key[1]]}"
                else:
                    text = f"{text}: {row.count} ({row.first} .. {row.last})"
            out.append((row.cpu, text, row.ts))
        return out

    def render(self, width: int = 44) -> str:
        header = " | ".join(f"{'CPU ' + str(c):<{width}}" for c in range(self.nr_cpus)).rstrip()
        rule = "-+-".join("-" * width for _ in range(self.nr_cpus))
        out = [header, rule]
        for cpu, text in self.lines():
            for piece in textwrap.wrap(text, width, subsequent_indent="  ") or [""]:
                cells = [piece if c == cpu else "" for c in range(self.nr_cpus)]
                out.append(" | ".join(f"{cell:<{width}}" for cell in cells).rstrip())
        return "\n".join(out) + "\n"

    def to_json(self) -> list[dict]:
        return [{"cpu": cpu, "event": text} for cpu, text in self.lines()]
