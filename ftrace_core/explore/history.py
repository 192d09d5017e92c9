"""The history table: every bug of kernels.bugs explored on every variant, each verdict
checked against what the catalogue of trees says, every failing schedule replayed on every
variant.

A bug's scenario may also show other bugs of the history (the DISABLED-shutdown scenario
loads a module while tracing starts, so on the old kernels the module-load race shows too);
a failure counts for the bug whose signature its kind carries.  A verdict "agrees" when:
- the variants with the bug (the change that brought it, not the one that fixed it) fail
  with it in some schedule, and the others never do;
- every other failure is one of the history's bugs that the variant has;
- each failing schedule fails again, the same way, when replayed on its own variant, and
  never with this bug on a variant without it.  (On another variant with the bug, a schedule
  may pass: the windows differ, as the seed's and the follow-up's DISABLED windows do.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .runner import VariantReport, cross_replay, explore_variant, map_forked
from ..kernels import KERNELS, VARIANTS
from ..kernels.bugs import BUGS, Bug
from ..scenario import load_scenario


@dataclass
class BugVerdict:
    bug: Bug
    reports: dict[str, VariantReport]
    #: variant -> {variant replayed on -> {failing schedule of the first -> kind there, or None}}
    replays: dict[str, dict[str, dict[str, str | None]]] = field(default_factory=dict)

    def failing(self, variant: str) -> list[str]:
        """The schedules of variant that failed with this bug."""
        report = self.reports[variant]
        return [s for s in report.failing_schedules if self.bug.explains(report.failing_kind[s])]

    def others(self, variant: str) -> dict[str, str]:
        """Failures of variant that are not this bug: schedule -> kind."""
        report = self.reports[variant]
        return {s: report.failing_kind[s] for s in report.failing_schedules
                if not self.bug.explains(report.failing_kind[s])}

    def expected_failing(self) -> list[str]:
        return [v for v in self.reports if self.bug.present_in(KERNELS[v])]

    def disagreements(self) -> list[str]:
        """What contradicts the history, in words; empty when the verdict agrees."""
        out = []
        for v, report in self.reports.items():
            tree = KERNELS[v]
            must = self.bug.present_in(tree)
            if not report.complete:
                out.append(f"{v}: exploration incomplete")
            if must and not self.failing(v):
                out.append(f"{v}: has the bug but no schedule failed with it")
            if not must and self.failing(v):
                out.append(f"{v}: does not have the bug, yet {len(self.failing(v))} schedules failed with it")
            for schedule, kind in self.others(v).items():
                if not any(b.explains(kind) and b.present_in(tree) for b in BUGS):
                    out.append(f"{v}: {schedule!r} failed with no known bug of this tree: {kind}")
        for v, on in self.replays.items():
            for other, kinds in on.items():
                for schedule, kind in kinds.items():
                    if other == v and kind != self.reports[v].failing_kind[schedule]:
                        out.append(f"{v}: {schedule!r} replayed gives {kind or 'no failure'}")
                    if other != v and kind and self.bug.explains(kind) and not self.bug.present_in(KERNELS[other]):
                        out.append(f"{v}'s {schedule!r} fails with the bug on {other}, which does not have it")
        return out

    def to_json(self) -> dict:
        disagreements = self.disagreements()
        return {
            "bug": self.bug.name, "scenario": self.bug.scenario, "summary": self.bug.summary,
            "fixed_in": self.bug.fixing_tree().name, "expected_failing": self.expected_failing(),
            "variants": {v: {"schedules": r.schedules, "failing": len(self.failing(v)),
                             "other_failures": len(self.others(v)), "complete": r.complete,
                             "shortest_failing": min(self.failing(v), key=len, default=None),
                             "failure_kinds": dict(sorted(r.kinds.items()))}
                         for v, r in self.reports.items()},
            "cross_replay": {v: {other: sum(1 for k in kinds.values() if k and self.bug.explains(k))
                                 for other, kinds in on.items()} for v, on in self.replays.items()},
            "agrees": not disagreements, "disagreements": disagreements,
        }


def explore_bug(bug: Bug, variants: list[str] | None = None, max_preemptions: int | None = None,
                jobs: int = 1) -> BugVerdict:
    """Explore the bug's scenario on each variant (every schedule, coarse granularity, unless
    bounded), then replay each variant's failing schedules on every variant, its own too."""
    variants = list(variants or VARIANTS)
    scn = load_scenario(bug.scenario)
    reduce = max_preemptions is None

    def one(v: str) -> VariantReport:
        return explore_variant(scn, v, max_preemptions=max_preemptions, reduce=reduce)

    reports = dict(zip(variants, map_forked(one, variants, jobs)))
    verdict = BugVerdict(bug, reports)
    tasks = [(v, other) for v in variants if reports[v].failing_schedules for other in variants]

    def replay(task: tuple[str, str]) -> dict[str, str | None]:
        v, other = task
        schedules = reports[v].failing_schedules
        kind_of = cross_replay(scn, schedules, other)["kind_of"]
        return {s: kind_of.get(s) for s in schedules}

    for (v, other), kinds in zip(tasks, map_forked(replay, tasks, jobs)):
        verdict.replays.setdefault(v, {})[other] = kinds
    return verdict


def explore_history(max_preemptions: int | None = None, jobs: int = 1) -> list[BugVerdict]:
    return [explore_bug(bug, max_preemptions=max_preemptions, jobs=jobs) for bug in BUGS]
