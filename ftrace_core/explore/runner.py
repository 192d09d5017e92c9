"""Exploring every schedule of a scenario on each kernel variant.

The booted state is prepared once per variant in this process (ftrace_core.explore.run);
emu.explore decides which schedules to run, and a runner runs each: by default
emu.forktree, where each schedule resumes from the deepest paused fork on its prefix (the
state after its first steps, left behind by an earlier run), or, as before it, each in a
child forked from the booted state.  Both give the same runs in the same order: the second
is kept as the first's oracle.  With jobs > 1 the search is split among worker processes
forked from the prepared one (.parallel), or with a cluster among Ray actors (.cluster); the
report is the one a single search gives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from emu.dpor import Dpor
from emu.explore import PCT, Plan, RunTrace, Runner, explore
from emu.forktree import DEFAULT_THRESHOLD_S, ForkTree

from ..scenario import NR_CPUS, Scenario
from .forked import map_forked
from .parallel import ForkedWorkers, merged
from .run import GRANULARITIES, Outcome, Prepared, ScheduleRun, broken_trace, outcome_of, state_digest

if TYPE_CHECKING:
    from .cluster import Cluster

__all__ = ["GRANULARITIES", "REDUCTIONS", "RUNNERS", "THRESHOLDS_S", "Outcome", "Prepared", "ScheduleRun", "VariantReport", "cross_replay",
           "explore_random", "explore_variant", "make_runner", "map_forked", "outcome_of", "state_digest"]

RUNNERS = ("prefix", "fork-from-boot")
#: How the reduction chooses what to run: dpor (emu.dpor: only where a run shows a race,
#: one run per class of equivalent runs, none cut short; within a preemption bound, the
#: bounded variant: a CPU to try where a race is and where its CPU's run of steps began) or
#: sleep-sets (emu.explore: every CPU at every point, sleep sets cutting short what is
#: covered).  A split search (jobs, a cluster) takes sleep sets: a DPOR search's branches
#: depend on each other.  Sleep sets within a bound may skip a class's only bounded runs
#: (the CLI refuses them; tests of the split search's mechanics use them).
REDUCTIONS = ("dpor", "sleep-sets")
#: CPU time of steps between checkpoints (emu.forktree), by granularity.  A checkpoint's
#: fork, and the copy-on-write faults after it, cost more the more a run holds: at record
#: granularity (~500 steps a run) a sweep on the race found 20 ms best (6 ms: 7-15% slower,
#: 3 ms: 60%), at coarse 6 ms (12-20 ms: ~20% slower).
THRESHOLDS_S = {"coarse": DEFAULT_THRESHOLD_S, "record": 0.02, "fine": 0.02}


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
    por: str = "dpor"  # how the reduction chooses: dpor, or sleep-sets alone (see REDUCTIONS)
    footprints: str = "page"  # what the reduction knows of a step (ftrace_core.explore.footprints)
    verdict_hits: int = 0  # runs whose invariants' verdict came from the cache, not check()
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
            "por": self.por if self.reduction else None,
            "footprints": self.footprints,
            "verdict_hits": self.verdict_hits,
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
                    threshold_s: float | None = None, cluster: "Cluster | None" = None,
                    por: str | None = None, footprints: str = "page", cache_verdicts: bool = True) -> VariantReport:
    """Enumerate the scenario's schedules on one variant (all of them, or within a
    preemption bound), checking the invariants after each.

    runner: "prefix" resumes each schedule from the deepest paused fork on its prefix
    (emu.forktree: a checkpoint after threshold_s of CPU time of steps, where another CPU
    could be chosen; by default THRESHOLDS_S for the granularity); "fork-from-boot" runs
    each in a fork of the booted state.  Both give the same runs, in the same order.  With
    jobs > 1, that many worker processes forked from the booted state split the search,
    each with a runner of its own; with a cluster (.cluster), its Ray actors do, each
    booting the variant itself.  Either way the report is the one a single search gives
    (only the times and the runner's counts differ).

    por: how the reduction chooses (REDUCTIONS); by default dpor in one search, sleep-sets
    in a split one.  footprints: "page" or "coarse" (ftrace_core.explore.footprints).
    cache_verdicts: check the invariants once per distinct final state (and what they read
    besides, invariants.verdict_key)."""
    if runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}: expected one of {', '.join(RUNNERS)}")
    if threshold_s is None:
        threshold_s = THRESHOLDS_S.get(granularity, DEFAULT_THRESHOLD_S)
    split = cluster is not None or jobs > 1
    if por is None:
        por = "sleep-sets" if split else "dpor"
    if por not in REDUCTIONS:
        raise ValueError(f"unknown reduction {por!r}: expected one of {', '.join(REDUCTIONS)}")
    if reduce and por == "dpor" and split:
        raise ValueError("dpor explores in one search: with jobs or a cluster splitting a variant, use sleep-sets")
    report = VariantReport(variant, preemption_bound=max_preemptions, reduction=reduce, granularity=granularity,
                           runner=runner, por=por, footprints=footprints)
    settings = {"patching": patching, "footprints": footprints, "cache_verdicts": cache_verdicts}
    start = time.perf_counter()
    if cluster is not None or jobs > 1:
        if cluster is not None:
            workers = cluster.workers(scenario, variant, granularity=granularity, quantum=quantum, runner=runner,
                                      threshold_s=threshold_s, max_preemptions=max_preemptions, reduce=reduce,
                                      **settings)
        else:
            prepared = Prepared(scenario, variant, granularity, quantum, **settings)
            workers = ForkedWorkers(jobs, lambda in_child: make_runner(prepared, runner, threshold_s, in_child),
                                    max_preemptions, reduce)
        traces: Iterable[RunTrace] = (visit.trace for visit in merged(workers, limit))
        close, stats = workers.close, lambda: list(workers.stats.values())
    else:
        prepared = Prepared(scenario, variant, granularity, quantum, **settings)
        one, close = make_runner(prepared, runner, threshold_s)
        if reduce and por == "dpor":
            traces = Dpor(one, limit, max_preemptions)
        else:
            traces = explore(one, max_preemptions, reduce, limit)
        stats = lambda: [getattr(one, "stats", None)]  # noqa: E731
    try:
        for trace in traces:
            _record(report, trace)
            if limit is not None and report.runs + report.pruned >= limit:
                report.complete = False
            if progress is not None:
                progress(report)
    finally:
        close()  # every process the search started ends, even on an exception or Ctrl-C
        counted = [s for s in stats() if s is not None]  # ForkTreeStats, from the prefix runner
        report.checkpoints = sum(s.checkpoints for s in counted)
        report.resumed_steps = sum(s.resumed_steps for s in counted)
    if not split and prepared.verdicts is not None:  # (a split search's workers keep their own)
        report.verdict_hits = prepared.verdicts.hits
    report.seconds = time.perf_counter() - start
    return report


def make_runner(prepared: Prepared, runner: str, threshold_s: float = DEFAULT_THRESHOLD_S,
                in_child: Callable[[], None] | None = None) -> tuple[Runner, Callable[[], None]]:
    """The runner one search uses, and what ends the processes it leaves (a ForkTree's
    paused forks).  in_child runs first in every process of the tree: a worker's channel to
    its explorer is not theirs to keep."""
    if runner == "fork-from-boot":
        return prepared.run_forked, lambda: None

    def start(plan: Plan) -> ScheduleRun:
        if in_child is not None:
            in_child()
        return ScheduleRun(prepared, plan)
    tree = ForkTree(start, broken_trace, threshold_s, answerer=prepared.verdicts)
    return tree, tree.close


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


