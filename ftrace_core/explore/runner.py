"""Exploring every schedule of a scenario on each kernel variant.

The booted state is prepared once per variant in this process (kernel booted, the call
audit's hooks in place, modules parsed, translated code warm); every schedule then runs in a
child made by fork(), which starts from exactly that state and reports back the path it took
and what the invariants found.  emu.explore decides which schedules to run.

Scheduling points are the points of the granularity chosen:
  coarse  every named point but the per-record rewrites, the breakpoint passes' run_sync
          and guest-code slices (default)
  record  also one point per call-site write and per run_sync
  fine    also a point between slices of guest code (--quantum instructions)
"""

from __future__ import annotations

import hashlib
import os
import pickle
import select
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from emu.dwarf import prototypes_in
from emu.errors import MemoryAccessError
from emu.explore import PCT, Node, Plan, RunTrace, continue_choice, explore, next_sleep, preempts
from emu.footprint import Tracker
from emu.schedule import Schedule

from ..invariants import CallAudit, check
from ..scenario import NR_CPUS, CommandResult, Scenario, scheduler_for
from ..system import System, boot

GRANULARITIES = ("coarse", "record", "fine")
_PER_WRITE = {"ftrace_replace_code", "ftrace_module_enable", "bp_write", "bp_update", "bp_finish", "text_byte",
              "run_sync"}
_FINE_ONLY = {"coarse": _PER_WRITE | {"quantum"}, "record": {"quantum"}, "fine": set()}


@dataclass
class Outcome:
    invariants: dict[str, bool]
    kind: str | None  # None when every invariant holds
    bug: str | None
    errors: list[str]
    digest: str = ""  # the final state: records, call sites, trace, dmesg, command results


@dataclass
class VariantReport:
    """What exploring one variant found.  `runs` counts executions; `schedules` the distinct
    schedules among them: two runs that differ only in a CPU trying a lock it then waits for
    print (and replay) as one schedule, and count once, failures included."""

    variant: str
    schedules: int = 0
    runs: int = 0
    pruned: int = 0
    failing_schedules: list[str] = field(default_factory=list)
    failing_preemptions: dict[str, int] = field(default_factory=dict)
    failing_kind: dict[str, str] = field(default_factory=dict)  # schedule -> its failure kind
    kinds: dict[str, int] = field(default_factory=dict)
    final_states: set[str] = field(default_factory=set)
    seconds: float = 0.0
    preemption_bound: int | None = None
    reduction: bool = True
    granularity: str = "coarse"
    random_runs: int | None = None
    failing_seeds: list[int] = field(default_factory=list)
    complete: bool = True
    seen: set[str] = field(default_factory=set, repr=False)

    @property
    def shortest_failing(self) -> str | None:
        if not self.failing_schedules:
            return None
        return min(self.failing_schedules, key=lambda s: (self.failing_preemptions[s], len(s), s))

    def to_json(self) -> dict:
        return {
            "schedules": self.schedules,
            "runs": self.runs,
            "pruned": self.pruned,
            "failing": len(self.failing_schedules),
            "failing_schedules": sorted(self.failing_schedules),
            "shortest_failing": self.shortest_failing,
            "shortest_failing_preemptions": (self.failing_preemptions[self.shortest_failing]
                                             if self.shortest_failing else None),
            "failure_kinds": dict(sorted(self.kinds.items())),
            "final_states": len(self.final_states),
            "preemption_bound": self.preemption_bound,
            "reduction": self.reduction,
            "granularity": self.granularity,
            "complete": self.complete,
            "seconds": round(self.seconds, 3),
            "schedules_per_s": round(self.runs / self.seconds, 1) if self.seconds else None,
            **({"random_runs": self.random_runs, "failing_seeds": self.failing_seeds}
               if self.random_runs is not None else {}),
        }


def state_digest(system: System, results: Iterable) -> str:
    """A digest of what a run leaves: two runs that differ only in the order of independent
    steps must leave the same."""
    h = hashlib.sha256()
    for rec in system.ftrace.records:
        try:
            code = system.read(rec.ip, 5)
        except MemoryAccessError:  # the stale record of a module freed while ftrace was dead
            code = b"unmapped"
        h.update(struct.pack("<QQ", rec.ip, rec.flags) + code)
    for entry in system.buffer.entries():
        h.update(repr((entry.cpu, entry.ts, entry.ip, entry.parent_ip, entry.pid)).encode())
    h.update(system.dmesg().encode())
    for r in sorted(results, key=lambda r: (r.cpu, r.command)):
        h.update(repr((r.cpu, r.command, r.output, r.error)).encode())
    h.update(repr((system.ftrace.ftrace_disabled, system.tracefs.current_tracer,
                   [(m.name, m.state.name) for m in system.kernel.modules.modules])).encode())
    return h.hexdigest()[:16]


def outcome_of(system: System, audit: CallAudit, results: list) -> Outcome:
    errors = [r.error for r in results if r.error]
    invariants, _ = check(system, audit, results)
    failed = [name for name, ok in invariants.items() if not ok]
    bug = system.ftrace.bug_report
    kind = None
    if failed:
        kind = ", ".join(failed)
        oops = next((e for r, e in ((r, r.error) for r in results) if r.oops), None)
        if oops and not bug:
            kind += ": " + oops.split(",")[0].split(" address")[0]
        if system.ftrace.killed_by and system.ftrace.killed_by != "ftrace_bug()":
            kind += f": {system.ftrace.killed_by}"  # a FTRACE_WARN_ON that killed ftrace
        elif bug:
            lines = bug.splitlines()
            passed = lines[0].split(" (")[0] if lines[0].startswith("Failed on ") else None
            first = lines[1] if passed and len(lines) > 1 else lines[0]
            kind += ": " + first.split(" [<")[0] + " " + first.split("] ", 1)[-1].split("+")[0]
            if passed:
                kind += f" ({passed[0].lower()}{passed[1:]})"
    return Outcome(invariants, kind, bug, errors, state_digest(system, results))


class Prepared:
    """A booted system ready to be forked for each schedule."""

    def __init__(self, scenario: Scenario, variant: str, granularity: str, quantum: int,
                 system_factory: Callable[[str], System] | None = None, patching: str = "breakpoints"):
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}: expected one of {', '.join(GRANULARITIES)}")
        self.scenario, self.variant, self.granularity, self.quantum = scenario, variant, granularity, quantum
        if system_factory is None:  # the scenario's kernel command line, if it has one
            system_factory = lambda v: boot(v, cmdline=scenario.cmdline)  # noqa: E731
        self.system = system_factory(variant)
        self.system.ftrace.record_points = granularity != "coarse"
        self.system.ftrace.patching = patching
        self.audit = CallAudit(self.system)
        self.audit.install()
        loader = self.system.kernel.modules
        for cmds in scenario.commands.values():
            for cmd in cmds:
                if cmd.kind == "insmod":
                    with open(cmd.args[0], "rb") as f:
                        loader.parse(f.read(), cmd.args[0])
                    prototypes_in(cmd.args[0])  # read once here, not in every child
        self.system.kernel.machine.clock.sweep_all()  # once here, not in every child
        self.tracker = Tracker()
        k = self.system.kernel
        self.tracker.known_code = {k.symbol("ftrace_text_poke_batch"): (),
                                   k.symbol("printk"): (("log",), ("trace",))}

    # -- inside the child ---------------------------------------------------------------------
    def run(self, plan: Plan | None, pct: PCT | None = None) -> RunTrace:
        system, tracker = self.system, self.tracker
        kernel = system.kernel
        for lock in (system.ftrace.ftrace_lock, kernel.modules.module_mutex, system.tracefs.trace_types_lock):
            lock.tracker = tracker
        kernel.machine.tracker = tracker
        kernel.modules.tracker = tracker
        system.ftrace.tracker = tracker
        results: list = []
        sched = scheduler_for(system, self.scenario, results, self.quantum)
        fine_only = _FINE_ONLY[self.granularity]
        nodes: list[Node] = []
        sleep: dict[int, object] = {}
        current = None
        pruned = False
        prefix = plan.prefix if plan else ()
        while not sched.all_done():
            enabled = tuple(c for c in sorted(sched.tasks) if sched.runnable(c))
            if not enabled:  # a deadlock: say what was left undone
                for cpu, task in sched.tasks.items():
                    if not task.done:
                        results.append(CommandResult(cpu, "(unfinished)", stuck=True,
                                                     error=f"deadlock: waiting for {task.blocked_on.name}"))
                break
            i = len(nodes)
            if i < len(prefix):
                choice = prefix[i]
                if choice not in enabled:
                    raise RuntimeError(f"schedule diverged at step {i}: CPU {choice} not enabled")
                if plan.reduce and i == len(prefix) - 1:
                    sleep = dict(plan.sleep)
            elif pct is not None:
                choice = pct.choose(i, current, enabled)
            else:
                choice = continue_choice(current, enabled, set(sleep) if plan and plan.reduce else set())
                if choice is None:
                    pruned = True
                    break
            node_sleep = tuple(sorted(sleep.items())) if i >= len(prefix) - 1 else ()
            pre = nodes[-1].preemptions if nodes else 0
            if i and nodes[-1].chosen != choice and nodes[-1].chosen in enabled:
                pre += 1  # the CPU that ran last could have gone on
            tracker.take()
            sched.run_until_point(choice, lambda label: label not in fine_only)
            nodes.append(Node(enabled, choice, tracker.take(), node_sleep, pre))
            if plan and plan.reduce and i >= len(prefix) - 1:
                sleep = next_sleep(sleep, choice, nodes[-1].footprint)
            current = choice
        for lock in (system.ftrace.ftrace_lock, kernel.modules.module_mutex, system.tracefs.trace_types_lock):
            lock.tracker = None
        kernel.machine.tracker = kernel.modules.tracker = system.ftrace.tracker = None
        schedule = sched.schedule_string(self.quantum)
        if pruned:
            return RunTrace(nodes, None, schedule, pruned=True)
        return RunTrace(nodes, outcome_of(system, self.audit, results), schedule)

    def replay(self, schedule: str) -> RunTrace:
        """Run a schedule string (as `race --schedule` would) and check the invariants."""
        system = self.system
        results: list = []
        sched = scheduler_for(system, self.scenario, results, self.quantum)
        parsed = Schedule.parse(schedule, NR_CPUS)
        parsed.quantum = self.quantum
        ran = sched.run(parsed)
        return RunTrace([], outcome_of(system, self.audit, results), ran)

    # -- from the parent ----------------------------------------------------------------------
    def run_forked(self, plan: Plan | None, pct: PCT | None = None) -> RunTrace:
        return _collect(self._spawn(lambda: self.run(plan, pct)))

    def replay_forked(self, schedule: str) -> RunTrace:
        return _collect(self._spawn(lambda: self.replay(schedule)))

    def _spawn(self, work: Callable[[], RunTrace]) -> tuple[int, int]:
        def guarded() -> RunTrace:
            try:
                return work()
            except Exception as exc:  # a broken run is reported, not raised in the child
                return _error_trace(f"{type(exc).__name__}: {exc}")
        return _spawn_any(guarded)


def _error_trace(message: str) -> RunTrace:
    return RunTrace([], Outcome({}, f"explorer error: {message}", None, []), "")


def _collect(child: tuple[int, int]) -> object:
    """What a child process wrote back (a RunTrace, a report, or the exception it raised)."""
    pid, r = child
    chunks = []
    while True:
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    data = b"".join(chunks)
    if len(data) < 8:
        return _error_trace("a run died without a report")
    return pickle.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])


def _record(report: VariantReport, trace: RunTrace) -> None:
    if trace.pruned:
        report.pruned += 1
        return
    report.runs += 1
    if trace.schedule in report.seen:
        return
    report.seen.add(trace.schedule)
    report.schedules += 1
    outcome = trace.outcome
    report.final_states.add(outcome.digest)
    if outcome.kind is not None:
        report.kinds[outcome.kind] = report.kinds.get(outcome.kind, 0) + 1
        if trace.schedule not in report.failing_preemptions:
            report.failing_schedules.append(trace.schedule)
            report.failing_preemptions[trace.schedule] = trace.nodes[-1].preemptions if trace.nodes else 0
            report.failing_kind[trace.schedule] = outcome.kind


def explore_variant(scenario: Scenario, variant: str, *, max_preemptions: int | None = None, reduce: bool = True,
                    granularity: str = "coarse", quantum: int = 1000, jobs: int = 1, limit: int | None = None,
                    progress: Callable[[VariantReport], None] | None = None,
                    patching: str = "breakpoints") -> VariantReport:
    """Enumerate the scenario's schedules on one variant (all of them, or within a
    preemption bound), checking the invariants after each."""
    report = VariantReport(variant, preemption_bound=max_preemptions, reduction=reduce, granularity=granularity)
    start = time.perf_counter()
    prepared = Prepared(scenario, variant, granularity, quantum, patching=patching)
    if jobs > 1 and not reduce:
        traces: Iterable[RunTrace] = _explore_parallel(prepared, max_preemptions, jobs, limit)
    else:
        traces = explore(prepared.run_forked, max_preemptions, reduce, limit)
    for trace in traces:
        _record(report, trace)
        if limit is not None and report.runs + report.pruned >= limit:
            report.complete = False
        if progress is not None:
            progress(report)
    report.seconds = time.perf_counter() - start
    return report


def _explore_parallel(prepared: Prepared, max_preemptions: int | None, jobs: int,
                      limit: int | None) -> Iterable[RunTrace]:
    """Plain enumeration with several runs in flight: each run's untried alternatives at the
    points after its own branch point are its subtree, so the set of runs does not depend on
    the order they finish in."""
    frontier: list[Plan] = [Plan(())]
    running: dict[int, tuple[tuple[int, int], Plan]] = {}
    done = 0
    while frontier or running:
        while frontier and len(running) < jobs and (limit is None or done + len(running) < limit):
            plan = frontier.pop()
            child = prepared._spawn(lambda plan=plan: prepared.run(plan))
            running[child[1]] = (child, plan)
        if not running:
            break
        ready, _, _ = select.select(list(running), [], [])
        for fd in ready:
            child, plan = running.pop(fd)
            trace = _collect(child)
            done += 1
            yield trace
            nodes = trace.nodes
            for i in range(len(plan.prefix), len(nodes)):
                for alt in nodes[i].enabled:
                    if alt == nodes[i].chosen:
                        continue
                    cost = nodes[i].preemptions + (1 if preempts(nodes, i, alt) else 0)
                    if max_preemptions is not None and cost > max_preemptions:
                        continue
                    frontier.append(Plan(tuple(n.chosen for n in nodes[:i]) + (alt,)))


def explore_random(scenario: Scenario, variant: str, runs: int, seed: int, depth: int = 3,
                   granularity: str = "coarse", quantum: int = 1000,
                   progress: Callable[[VariantReport], None] | None = None,
                   patching: str = "breakpoints") -> VariantReport:
    """Seeded PCT: `runs` random schedules; each failure is reported with its own seed."""
    report = VariantReport(variant, granularity=granularity, random_runs=runs, complete=False)
    start = time.perf_counter()
    prepared = Prepared(scenario, variant, granularity, quantum, patching=patching)
    steps = len(prepared.run_forked(None).nodes)
    for i in range(runs):
        run_seed = seed * 1_000_003 + i
        trace = prepared.run_forked(None, PCT(run_seed, depth, NR_CPUS, steps))
        failed_before = len(report.failing_schedules)
        _record(report, trace)
        if trace.outcome is not None and trace.outcome.kind is not None and len(report.failing_schedules) > failed_before:
            report.failing_seeds.append(run_seed)
        if progress is not None:
            progress(report)
    report.seconds = time.perf_counter() - start
    return report


def cross_replay(scenario: Scenario, schedules: Iterable[str], variant: str, granularity: str = "coarse",
                 quantum: int = 1000, patching: str = "breakpoints") -> dict:
    """Replay schedules found on one variant on another (or with another way of patching):
    how many fail there, and how."""
    prepared = Prepared(scenario, variant, granularity, quantum, patching=patching)
    failing, kinds, clean, kind_of = [], {}, [], {}
    for schedule in schedules:
        trace = prepared.replay_forked(schedule)
        if trace.outcome.kind is None:
            clean.append(schedule)
        else:
            failing.append(schedule)
            kinds[trace.outcome.kind] = kinds.get(trace.outcome.kind, 0) + 1
            kind_of[schedule] = trace.outcome.kind
    return {"variant": variant, "replayed": len(failing) + len(clean), "failing": len(failing),
            "clean": len(clean), "failure_kinds": dict(sorted(kinds.items())), "clean_schedules": sorted(clean),
            "kind_of": kind_of}


def map_forked(fn: Callable[..., object], items: list, jobs: int,
               progress: Callable[[int, object], None] | None = None) -> list:
    """fn over items, each in a child process of its own, at most `jobs` at a time; results in
    the order of items.  (Each child may fork further: explorations do.)  With progress, fn
    is called as fn(item, tick): each value a child gives tick (something small) reaches
    progress(index of the item, value) in this process while the child runs."""
    results: dict[int, object] = {}
    pending = list(enumerate(items))
    running: dict[int, tuple[tuple[int, int], int]] = {}
    ticks: dict[int, tuple[int, bytearray]] = {}  # progress pipe -> (item index, bytes so far)
    while pending or running:
        while pending and len(running) < max(1, jobs):
            index, item = pending.pop(0)
            if progress is None:
                child = _spawn_any(lambda item=item: fn(item))
            else:
                r, w = os.pipe()
                child = _spawn_any(lambda item=item, w=w: fn(item, _ticker(w)))
                os.close(w)  # the child has its copy: the pipe ends when the child does
                ticks[r] = (index, bytearray())
            running[child[1]] = (child, index)
        ready, _, _ = select.select(list(running) + list(ticks), [], [])
        for fd in ready:
            if fd in ticks:
                _read_ticks(fd, ticks, progress)
                continue
            if fd not in running:
                continue  # a progress pipe read to its end with its child's result just now
            child, index = running.pop(fd)
            results[index] = _collect(child)
            for tick_fd in [t for t, (i, _) in ticks.items() if i == index]:
                _read_ticks(tick_fd, ticks, progress, until_eof=True)
            if isinstance(results[index], BaseException):
                raise results[index]
    return [results[i] for i in range(len(items))]


def _ticker(w: int) -> Callable[[object], None]:
    def tick(value: object) -> None:
        data = pickle.dumps(value)
        os.write(w, struct.pack("<I", len(data)) + data)
    return tick


def _read_ticks(fd: int, ticks: dict, progress: Callable[[int, object], None], until_eof: bool = False) -> None:
    """Pass on the whole messages waiting in a child's progress pipe; close it at its end."""
    index, buf = ticks[fd]
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            os.close(fd)
            del ticks[fd]
            break
        buf += chunk
        if not until_eof:
            break
    while len(buf) >= 4 and len(buf) >= 4 + struct.unpack("<I", buf[:4])[0]:
        size = struct.unpack("<I", buf[:4])[0]
        progress(index, pickle.loads(bytes(buf[4:4 + size])))
        del buf[:4 + size]


def _spawn_any(work: Callable[[], object]) -> tuple[int, int]:
    """Fork a child running work(); (pid, the pipe its result comes back on)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            result = work()
        except BaseException as exc:  # hand the error to the parent, which raises it
            result = exc
        _write_all(w, result)
        os._exit(0)
    os.close(w)
    return pid, r


def _write_all(w: int, obj: object) -> None:
    data = pickle.dumps(obj)
    os.write(w, struct.pack("<Q", len(data)))
    view = memoryview(data)
    while view:
        n = os.write(w, view[:1 << 16])
        view = view[n:]
