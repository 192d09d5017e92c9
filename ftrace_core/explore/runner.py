"""Exploring every schedule of a scenario on each kernel variant.

The booted state is prepared once per variant in this process (ftrace_core.explore.run);
emu.explore decides which schedules to run, and a runner runs each: by default
emu.forktree, where each schedule resumes from the deepest paused fork on its prefix (the
state after its first steps, left behind by an earlier run), or, as before it, each in a
child forked from the booted state.  Both give the same runs in the same order: the second
is kept as the first's oracle.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from emu.explore import PCT, Plan, RunTrace, explore, preempts
from emu.forktree import DEFAULT_THRESHOLD_S, ForkTree

from ..scenario import NR_CPUS, Scenario
from .forked import map_forked
from .run import (
    GRANULARITIES, Outcome, Prepared, ScheduleRun, broken_trace, collect_trace, outcome_of, state_digest,
)

__all__ = ["GRANULARITIES", "RUNNERS", "Outcome", "Prepared", "ScheduleRun", "VariantReport", "cross_replay",
           "explore_random", "explore_variant", "map_forked", "outcome_of", "state_digest"]

RUNNERS = ("prefix", "fork-from-boot")


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
    runner: str = "fork-from-boot"
    checkpoints: int = 0  # paused forks left behind (the prefix runner)
    resumed_steps: int = 0  # steps not run again thanks to them
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
            "runner": self.runner,
            "seconds": round(self.seconds, 3),
            "schedules_per_s": round(self.runs / self.seconds, 1) if self.seconds else None,
            **({"random_runs": self.random_runs, "failing_seeds": self.failing_seeds}
               if self.random_runs is not None else {}),
        }


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
                    patching: str = "breakpoints", runner: str = "prefix",
                    threshold_s: float = DEFAULT_THRESHOLD_S) -> VariantReport:
    """Enumerate the scenario's schedules on one variant (all of them, or within a
    preemption bound), checking the invariants after each.

    runner: "prefix" resumes each schedule from the deepest paused fork on its prefix
    (emu.forktree: a checkpoint after threshold_s of CPU time of steps, where another CPU
    could be chosen); "fork-from-boot" runs
    each in a fork of the booted state.  Both give the same runs, in the same order.  With
    jobs > 1 and no reduction, runs go in parallel from the booted state."""
    if runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}: expected one of {', '.join(RUNNERS)}")
    report = VariantReport(variant, preemption_bound=max_preemptions, reduction=reduce, granularity=granularity)
    start = time.perf_counter()
    prepared = Prepared(scenario, variant, granularity, quantum, patching=patching)
    tree = None
    if jobs > 1 and not reduce:
        report.runner = "fork-from-boot"
        traces: Iterable[RunTrace] = _explore_parallel(prepared, max_preemptions, jobs, limit)
    elif runner == "fork-from-boot":
        report.runner = runner
        traces = explore(prepared.run_forked, max_preemptions, reduce, limit)
    else:
        report.runner = runner
        tree = ForkTree(lambda plan: ScheduleRun(prepared, plan), broken_trace, threshold_s)
        traces = explore(tree, max_preemptions, reduce, limit)
    try:
        for trace in traces:
            _record(report, trace)
            if limit is not None and report.runs + report.pruned >= limit:
                report.complete = False
            if progress is not None:
                progress(report)
    finally:
        if tree is not None:
            tree.close()  # every paused process ends, even on an exception or Ctrl-C
            report.checkpoints, report.resumed_steps = tree.stats.checkpoints, tree.stats.resumed_steps
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
            trace = collect_trace(child)
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


