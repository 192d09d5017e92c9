"""Running one schedule of a scenario in the booted state of a kernel variant.

The booted state is prepared once per variant (kernel booted, the call audit's hooks in
place, modules parsed, translated code warm) in the explorer's process; a schedule runs in a
process forked from it (Prepared.run_forked), or a step at a time (ScheduleRun), which is
what lets emu.forktree pause a run in a forked process and resume it under another plan.
Each run reports the path it took (emu.explore.Node per scheduling point) and what the
invariants found.  With a VerdictCache, a run asks the explorer for the verdict on its final
state before checking the invariants itself (most schedules end in a handful of states).

Scheduling points are the points of the granularity chosen:
  coarse  every named point but the per-record rewrites, the breakpoint passes' run_sync
          and guest-code slices (default)
  record  also one point per call-site write and per run_sync
  fine    also a point between slices of guest code (--quantum instructions)
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from typing import Callable, Iterable

from emu.dwarf import prototypes_in
from emu.errors import MemoryAccessError
from emu.explore import PCT, Node, Plan, RunTrace, continue_choice, next_sleep
from emu.footprint import Footprint, Tracker
from emu.schedule import Schedule

from ..invariants import INVARIANTS, CallAudit, check, verdict_key
from ..scenario import NR_CPUS, CommandResult, Scenario, scheduler_for
from ..system import System, boot
from .footprints import (
    AUDIT, FOOTPRINTS, HOOK_STATE_LOCKS, HOOKS, HOOKS_BY_HOOKS, INT3, TRACE, audit_view, hook_state, int3_state,
)
from .forked import Ask, collect, spawn, spawn_asking

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
    verdict_key: str = ""  # what the invariants' verdict depends on (set when a cache was asked)
    verdict_cached: bool = False  # the verdict came from the explorer's cache, not from check()


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


def outcome_of(system: System, audit: CallAudit, results: list, ask: Ask | None = None) -> Outcome:
    """What a finished run found.  With ask (a line to the explorer's VerdictCache), the
    invariants are checked only if the explorer knows no verdict for this final state yet;
    the failure kind is worked out here either way, from this run's own state."""
    errors = [r.error for r in results if r.error]
    digest = state_digest(system, results)
    key = verdict_key(system, audit, results, digest) if ask is not None else ""
    invariants = ask(key) if key else None
    cached = invariants is not None
    if not cached:
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
    return Outcome(invariants, kind, bug, errors, digest, key, cached)


class VerdictCache:
    """The invariants' verdicts by verdict key (invariants.verdict_key), kept in the
    explorer's process for the runs it forks: those ask it before checking (answer), and it
    learns from their reports (reported).  It must live here: a run's process is forked
    from the booted state or from a checkpoint made before earlier runs ended, so a cache in
    it would never see their verdicts.

    A verdict is learnt only from a report that reached the explorer whole, and only one
    check() worked out in full, so a run that breaks (raises, dies, reports a broken
    outcome) leaves nothing behind.  One cache per Prepared: keys leave out the booted
    kernel's constants."""

    def __init__(self) -> None:
        self._verdicts: dict[str, dict[str, bool]] = {}
        self.hits = 0  # runs whose verdict came from here
        self.checked = 0  # runs that asked, found nothing, and checked

    def __len__(self) -> int:
        return len(self._verdicts)

    def answer(self, key: object) -> dict[str, bool] | None:
        return self._verdicts.get(key) if isinstance(key, str) else None

    def reported(self, trace: RunTrace) -> None:
        outcome = trace.outcome
        if not isinstance(outcome, Outcome) or not outcome.verdict_key:
            return  # pruned, broken, or never asked
        if outcome.verdict_cached:
            self.hits += 1
        elif set(outcome.invariants) == set(INVARIANTS):
            self.checked += 1
            self._verdicts.setdefault(outcome.verdict_key, dict(outcome.invariants))


class Prepared:
    """A booted system ready to be forked for each schedule."""

    def __init__(self, scenario: Scenario, variant: str, granularity: str, quantum: int,
                 system_factory: Callable[[str], System] | None = None, patching: str = "breakpoints",
                 footprints: str = "page", cache_verdicts: bool = False):
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}: expected one of {', '.join(GRANULARITIES)}")
        if footprints not in FOOTPRINTS:
            raise ValueError(f"unknown footprints {footprints!r}: expected one of {', '.join(FOOTPRINTS)}")
        self.footprints = footprints
        self.scenario, self.variant, self.granularity, self.quantum = scenario, variant, granularity, quantum
        #: What the runs of run_forked (and of a ForkTree given it as answerer) ask first.
        self.verdicts = VerdictCache() if cache_verdicts else None
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
        self.tracker = Tracker(precise=footprints == "page")
        k = self.system.kernel
        self.tracker.known_code = {k.symbol("ftrace_text_poke_batch"): (),
                                   k.symbol("printk"): (("log",), ("trace",))}
        if self.tracker.precise:  # the host state guest code sees through hooks (.footprints)
            system = self.system
            audit = self.audit  # on_traced() asks whether the call site is one it hooks
            self.tracker.watched = {HOOKS: lambda: (hook_state(system), len(audit.hooks)),
                                    AUDIT: lambda: audit_view(system, audit),
                                    INT3: lambda: int3_state(system)}
            k.machine.hooks.reports = {"hooks": ((HOOKS,), (TRACE,)), "audit": ((AUDIT,), ())}
            # The audit's block hook on every call site says when one runs (a site token).
            k.machine.hooks.site_tag = "audit"
            self.tracker.sites = audit.hooks
            k.machine.trap_reads = (INT3,)

    # -- inside the child ---------------------------------------------------------------------
    def run(self, plan: Plan | None, pct: PCT | None = None, ask: Ask | None = None) -> RunTrace:
        run = ScheduleRun(self, plan, pct)
        while run.step():
            pass
        return run.trace(ask)

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
        if self.verdicts is None:
            return collect_trace(self._spawn(lambda: self.run(plan, pct)))
        child = spawn_asking(lambda ask: _guarded(lambda: self.run(plan, pct, ask)))
        trace = collect_trace(child, self.verdicts.answer)
        self.verdicts.reported(trace)
        return trace

    def replay_forked(self, schedule: str) -> RunTrace:
        return collect_trace(self._spawn(lambda: self.replay(schedule)))

    def _spawn(self, work: Callable[[], RunTrace]) -> tuple[int, int]:
        return spawn(lambda: _guarded(work))


class ScheduleRun:
    """One schedule being run in this process, a step at a time: at each scheduling point
    the next CPU comes from the plan's prefix, then from PCT or the explorer's default (stay
    on the current CPU, skipping sleeping ones).  emu.forktree pauses a run between steps
    (in a forked process) and resumes it under another plan that extends its choices."""

    def __init__(self, prepared: Prepared, plan: Plan | None, pct: PCT | None = None):
        self.prepared, self.plan, self.pct = prepared, plan, pct
        system, tracker = prepared.system, prepared.tracker
        kernel = system.kernel
        for lock in self._locks():
            lock.tracker = tracker
        kernel.machine.tracker = kernel.modules.tracker = system.ftrace.tracker = tracker
        self.results: list = []
        self.sched = scheduler_for(system, prepared.scenario, self.results, prepared.quantum)
        self.fine_only = _FINE_ONLY[prepared.granularity]
        self.nodes: list[Node] = []
        self.sleep: dict[int, object] = {}
        self.current: int | None = None
        self.pruned = False
        self.over = False

    def _locks(self) -> tuple:
        system = self.prepared.system
        return system.ftrace.ftrace_lock, system.kernel.modules.module_mutex, system.tracefs.trace_types_lock

    @staticmethod
    def _hook_tokens(fp: Footprint, held: bool) -> Footprint:
        """The step's footprint with what .footprints says of hooks and locks."""
        reads, writes = fp.reads, fp.writes
        if HOOKS in writes and HOOKS in reads:  # a hook ran, and the state hooks see changed
            writes = writes | {HOOKS_BY_HOOKS}
        if held or any(("lock", name) in writes for name in HOOK_STATE_LOCKS):
            reads = reads | {HOOKS_BY_HOOKS}
        return Footprint(reads, writes, fp.everything)

    def _holds_hook_state_lock(self, cpu: int) -> bool:
        """Does cpu hold a lock under which host code changes what hooks read?"""
        sched = self.sched
        return any(lock.owner is not None and sched.holders.get(lock.name) == cpu
                   for lock in self._locks() if lock.name in HOOK_STATE_LOCKS)

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(n.chosen for n in self.nodes)

    @property
    def branching(self) -> bool:
        if self.over:
            return False
        reduce = self.plan is not None and self.plan.reduce
        awake = [c for c in self.sched.tasks if self.sched.runnable(c) and not (reduce and c in self.sleep)]
        return len(awake) > 1

    def redirect(self, plan: Plan) -> None:
        """Go on under plan (its prefix extends the choices so far): as a run of plan from
        the start would be here, with no sleep set yet and none recorded before its branch
        point."""
        self.plan = plan
        self.sleep = {}
        self.nodes = [replace(n, sleep=()) if n.sleep else n for n in self.nodes]

    def step(self) -> bool:
        """Run the chosen CPU to its next scheduling point; False (nothing run) once every
        task is done, a deadlock is found, or every enabled CPU is asleep (pruned)."""
        sched, plan, nodes = self.sched, self.plan, self.nodes
        if self.over or sched.all_done():
            self.over = True
            return False
        enabled = tuple(c for c in sorted(sched.tasks) if sched.runnable(c))
        if not enabled:  # a deadlock: say what was left undone
            for cpu, task in sched.tasks.items():
                if not task.done:
                    self.results.append(CommandResult(cpu, "(unfinished)", stuck=True,
                                                      error=f"deadlock: waiting for {task.blocked_on.name}"))
            self.over = True
            return False
        prefix = plan.prefix if plan else ()
        reduce = plan is not None and plan.reduce
        branch = plan.branch_point if plan else -1
        i = len(nodes)
        if i < len(prefix):
            choice = prefix[i]
            if choice not in enabled:
                if i > branch:  # a wakeup sequence that cannot be followed here (emu.dpor)
                    self.pruned = self.over = True
                    return False
                raise RuntimeError(f"schedule diverged at step {i}: CPU {choice} not enabled")
            if reduce and i == branch:
                self.sleep = dict(plan.sleep)
        elif self.pct is not None:
            choice = self.pct.choose(i, self.current, enabled)
        else:
            choice = continue_choice(self.current, enabled, set(self.sleep) if reduce else set())
            if choice is None:
                self.pruned = self.over = True
                return False
        node_sleep = tuple(sorted(self.sleep.items())) if i >= branch else ()
        pre = nodes[-1].preemptions if nodes else 0
        if i and nodes[-1].chosen != choice and nodes[-1].chosen in enabled:
            pre += 1  # the CPU that ran last could have gone on
            if plan is not None and plan.max_preemptions is not None and pre > plan.max_preemptions:
                self.pruned = self.over = True  # beyond the bound: no run of the search's
                return False
        tracker = self.prepared.tracker
        tracker.begin()
        machine = self.prepared.system.kernel.machine
        machine.begin_step()
        held = self._holds_hook_state_lock(choice)
        sched.run_until_point(choice, lambda label: label not in self.fine_only)
        fp = tracker.take()
        if tracker.precise:
            fp = self._hook_tokens(fp, held or self._holds_hook_state_lock(choice))
        nodes.append(Node(enabled, choice, fp, node_sleep, pre))
        if reduce and i >= branch:
            self.sleep = next_sleep(self.sleep, choice, nodes[-1].footprint)
        self.current = choice
        return True

    def trace(self, ask: Ask | None = None) -> RunTrace:
        system = self.prepared.system
        for lock in self._locks():
            lock.tracker = None
        kernel = system.kernel
        kernel.machine.tracker = kernel.modules.tracker = system.ftrace.tracker = None
        schedule = self.sched.schedule_string(self.prepared.quantum)
        if self.pruned:
            return RunTrace(self.nodes, None, schedule, pruned=True)
        return RunTrace(self.nodes, outcome_of(system, self.prepared.audit, self.results, ask), schedule)


def _guarded(work: Callable[[], RunTrace]) -> RunTrace:
    try:
        return work()
    except Exception as exc:  # a broken run is reported, not raised in the child
        return broken_trace(f"{type(exc).__name__}: {exc}")


def broken_trace(message: str) -> RunTrace:
    """A run that broke (raised, or died): no path, and an outcome saying why."""
    return RunTrace([], Outcome({}, f"explorer error: {message}", None, []), "")


def collect_trace(child: tuple[int, int], answer: Callable[[object], object] | None = None) -> RunTrace:
    """The RunTrace a forked run wrote back (or one saying it died without a word); answer
    replies to the questions of a child made by spawn_asking."""
    trace = collect(child, answer)
    return broken_trace("a run died without a report") if trace is None else trace
