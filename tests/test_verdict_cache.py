"""Caching the invariants' verdict per final state (issue #18, item 2a): the key changes with
every input check() reads; explorations with the cache make the same runs, with the same
outcomes, as without it; a run that breaks teaches the cache nothing; and the channel the
runs ask it over (a ForkTree's answerer, spawn_asking) delivers every answer."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from emu.explore import Node, Plan, RunTrace, explore
from emu.footprint import Footprint
from emu.forktree import ForkTree
from emu.machine import Perm
from emu.modules import ModuleState
from emu.schedule import Schedule
from ftrace_core.explore.forked import collect, map_forked, spawn_asking
from ftrace_core.explore.run import (
    Outcome, Prepared, ScheduleRun, VerdictCache, broken_trace, outcome_of, state_digest,
)
from ftrace_core.flags import FTRACE_FL_ENABLED, FTRACE_OPS_FL_ENABLED
from ftrace_core.invariants import INVARIANTS, CallAudit, check, verdict_key
from ftrace_core.ops import FtraceOps
from ftrace_core.scenario import NR_CPUS, load_scenario, scheduler_for
from ftrace_core.system import boot

RACE = load_scenario("race")


@dataclass
class Ended:
    """The race run to its end on legacy under the scenario's own schedule (the commit's
    table): ftrace dead, calls lost, race_mod live."""

    system: object
    audit: CallAudit
    results: list

    def key(self) -> str:
        return verdict_key(self.system, self.audit, self.results, state_digest(self.system, self.results))


@pytest.fixture
def ended() -> Ended:
    system = boot("legacy", cmdline=RACE.cmdline)
    audit = CallAudit(system)
    audit.install()
    results: list = []
    scheduler_for(system, RACE, results, RACE.quantum).run(Schedule.parse(RACE.schedule, NR_CPUS))
    return Ended(system, audit, results)


def _rec(e: Ended):
    return next(iter(e.system.ftrace.records))


def _race_mod(e: Ended):
    return next(m for m in e.system.kernel.modules.modules if m.name == "race_mod")


def _set_ops_flags(e: Ended) -> None:
    e.system.global_ops.flags ^= FTRACE_OPS_FL_ENABLED


def _add_filter(e: Ended) -> None:
    e.system.global_ops.filter_hash.add(_rec(e).ip)


def _add_notrace(e: Ended) -> None:
    e.system.global_ops.notrace_hash.add(_rec(e).ip)


def _set_trampoline(e: Ended) -> None:
    e.system.global_ops.trampoline = e.system.kernel.symbol("ftrace_stub")


def _register_ops(e: Ended) -> None:
    e.system.ftrace.ops_list.append(FtraceOps("another", e.system.kernel.symbol("ftrace_stub")))


def _protect_kernel_text(e: Ended) -> None:
    seg = e.system.kernel.segments[0]
    e.system.kernel.machine.protect(seg.start, 4096, Perm.RWX, "test")


def _protect_module_text(e: Ended) -> None:
    area = _race_mod(e).areas[0]
    e.system.kernel.machine.protect(area.base, area.size, Perm.RW, "test")


def _rewrite_site(e: Ended) -> None:
    rec = _rec(e)
    e.system.kernel.machine.uc.mem_write(rec.ip, b"\xcc" * 5)


def _pending_call(e: Ended) -> None:
    """An entry still awaiting its trace entry: finish() turns it into a loss."""
    ip = _rec(e).ip
    e.audit.expected[0] = (ip, ip, e.system.ftrace.generation, True)


#: One change per input of check() (the list in verdict_key's docstring), each alone.
CHANGES = {
    "ftrace_alive: ftrace_disabled": lambda e: setattr(e.system.ftrace, "ftrace_disabled", 0),
    "ftrace_alive: bug_report": lambda e: setattr(e.system.ftrace, "bug_report", None),
    "ftrace_alive: killed_by": lambda e: setattr(e.system.ftrace, "killed_by", "ftrace_kill()"),
    "ref_counts: a record's flags": lambda e: setattr(_rec(e), "flags",
                                                      _rec(e).flags ^ FTRACE_FL_ENABLED),
    "ref_counts: last_ftrace_enabled": lambda e: setattr(e.system.ftrace, "last_ftrace_enabled",
                                                         not e.system.ftrace.last_ftrace_enabled),
    "ref_counts: an ops' flags": _set_ops_flags,
    "ref_counts: an ops' filter": _add_filter,
    "ref_counts: an ops' notrace filter": _add_notrace,
    "ref_counts: the ops registered": _register_ops,
    "call_sites: a site's bytes": _rewrite_site,
    "call_sites: an ops' trampoline": _set_trampoline,
    "text_read_only: kernel text": _protect_kernel_text,
    "text_read_only: module text": _protect_module_text,
    "text_read_only: a module's state": lambda e: setattr(_race_mod(e), "state", ModuleState.UNFORMED),
    "calls_traced: a missed call": lambda e: e.audit.missed.append((0, 1, 2)),
    "calls_traced: a call traced twice": lambda e: e.audit.extra.append((0, 1, 2)),
    "calls_traced: a call still pending": _pending_call,
    "no_oops: an oops": lambda e: setattr(e.results[0], "oops", True),
    "no_deadlock: a stuck CPU": lambda e: setattr(e.results[0], "stuck", True),
}


def test_the_key_is_the_same_for_the_same_state(ended):
    assert ended.key() == ended.key()
    check(ended.system, ended.audit, ended.results)
    assert ended.key() == ended.key()  # check() settles the audit; the key already had


@pytest.mark.parametrize("name", list(CHANGES))
def test_the_key_changes_with_each_input_of_check(ended, name):
    before = ended.key()
    CHANGES[name](ended)
    assert ended.key() != before


def test_a_cached_verdict_gives_the_outcome_checking_gives(ended):
    """The failure kind is worked out in the run from its own state either way."""
    asked = []
    checked = outcome_of(ended.system, ended.audit, ended.results,
                         lambda key: asked.append(key))  # nothing known yet: None
    cached = outcome_of(ended.system, ended.audit, ended.results, lambda key: checked.invariants)
    assert asked == [checked.verdict_key] and not checked.verdict_cached and cached.verdict_cached
    assert checked.kind and "ftrace faulted on writing" in checked.kind
    fields = ("invariants", "kind", "bug", "errors", "digest", "verdict_key")
    assert [getattr(cached, f) for f in fields] == [getattr(checked, f) for f in fields]
    plain = outcome_of(ended.system, ended.audit, ended.results)
    assert (plain.invariants, plain.kind, plain.digest, plain.verdict_key) == \
        (checked.invariants, checked.kind, checked.digest, "")


def test_the_cache_learns_only_from_whole_reports():
    cache = VerdictCache()
    verdict = {name: True for name in INVARIANTS}
    cache.reported(broken_trace("a run died without a report"))
    cache.reported(RunTrace([], None, "0 1", pruned=True))
    cache.reported(RunTrace([], Outcome({"no_oops": True}, None, None, [], "d", "k1"), "0 1"))
    cache.reported(RunTrace([], Outcome(verdict, None, None, [], "d", ""), "0 1"))  # never asked
    assert len(cache) == 0 and cache.answer("k1") is None and (cache.hits, cache.checked) == (0, 0)
    cache.reported(RunTrace([], Outcome(verdict, None, None, [], "d", "k2"), "0 1"))
    cache.reported(RunTrace([], Outcome(verdict, None, None, [], "d", "k2", True), "1 0"))
    assert cache.answer("k2") == verdict and (cache.hits, cache.checked, len(cache)) == (1, 1, 1)


# -- the channel ------------------------------------------------------------------------------
@dataclass
class AskingRun:
    """Two CPUs with two dependent steps each; at its end the run asks about the order it
    took and puts the answer in its outcome.  die_after_asking: then exit without a word."""

    plan: Plan
    die_after_asking: tuple[int, ...] | None = None
    nodes: list = field(default_factory=list)
    left: dict = field(default_factory=lambda: {0: 2, 1: 2})

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(n.chosen for n in self.nodes)

    @property
    def branching(self) -> bool:
        return all(self.left.values())

    def redirect(self, plan: Plan) -> None:
        self.plan = plan

    def step(self) -> bool:
        enabled = tuple(c for c in (0, 1) if self.left[c])
        if not enabled:
            return False
        i = len(self.nodes)
        choice = self.plan.prefix[i] if i < len(self.plan.prefix) else (
            self.nodes[-1].chosen if self.nodes and self.nodes[-1].chosen in enabled else enabled[0])
        self.left[choice] -= 1
        self.nodes.append(Node(enabled, choice, Footprint(frozenset({"x"}), frozenset({"x"}))))
        return True

    def trace(self, ask=None) -> RunTrace:
        answer = ask(self.choices)
        if self.choices == self.die_after_asking:
            os._exit(3)
        return RunTrace(self.nodes, (self.choices, answer), " ".join(map(str, self.choices)))


@dataclass
class Recorder:
    asked: list = field(default_factory=list)
    reports: list = field(default_factory=list)

    def answer(self, question: object) -> object:
        self.asked.append(question)
        return None if len(self.asked) % 2 else len(self.asked)  # None is an answer too

    def reported(self, trace: RunTrace) -> None:
        self.reports.append(trace)


def broken(why: str) -> RunTrace:
    return RunTrace([], f"broken: {why}", "")


@pytest.mark.parametrize("threshold", [0.0, 1e9])
def test_a_trees_runs_ask_its_answerer_which_sees_every_report(threshold):
    """threshold 0: runs resume from checkpoints, and ask over connections of their own."""
    with ForkTree(AskingRun, broken, threshold, Recorder()) as tree:
        last = list(explore(tree, None, False))[-1]
    recorder = Recorder()
    with ForkTree(lambda plan: AskingRun(plan, die_after_asking=last.outcome[0]), broken, threshold, recorder) as tree:
        traces = list(explore(tree, None, False))
    assert len(traces) == 6  # every order of two steps on each of two CPUs
    assert recorder.reports == traces  # the broken one made for the run that died too
    assert [t.outcome for t in traces].count("broken: a run died without a report") == 1
    assert len(recorder.asked) == 6
    expected = {q: None if i % 2 else i for i, q in enumerate(recorder.asked, 1)}
    for t in traces:
        if t.nodes:
            choices, answer = t.outcome
            assert answer == expected[choices]
    if threshold == 0.0:
        assert tree.stats.checkpoints > 0


def test_a_forked_child_asks_and_is_answered_then_reports():
    def work(ask):
        return [ask(n) for n in range(4)]

    assert collect(spawn_asking(work), lambda n: None if n == 2 else n * 10) == [0, 10, None, 30]


def test_a_forked_child_that_dies_asking_reports_nothing():
    def work(ask):
        ask("first")
        os._exit(3)

    assert collect(spawn_asking(work), lambda q: q) is None


# -- explorations -----------------------------------------------------------------------------
def _runs(traces) -> list:
    """Each run as the search and the report see it (the cache's own fields aside)."""
    return [(t.schedule, t.pruned, [(n.enabled, n.chosen, n.sleep, n.preemptions) for n in t.nodes],
             None if t.outcome is None else
             (t.outcome.digest, t.outcome.kind, t.outcome.invariants, t.outcome.bug, t.outcome.errors))
            for t in traces]


def _explore(setting: tuple) -> tuple:
    """(runs, hits, checked, failing runs whose verdict came from the cache) of one exploration
    of the race on legacy; with the cache or not, by either runner."""
    cache_verdicts, runner, bound, limit = setting
    prepared = Prepared(RACE, "legacy", "coarse", RACE.quantum, cache_verdicts=cache_verdicts)
    if runner == "prefix":
        with ForkTree(lambda plan: ScheduleRun(prepared, plan), broken_trace, answerer=prepared.verdicts) as tree:
            traces = list(explore(tree, bound, bound is None, limit))
    else:
        traces = list(explore(prepared.run_forked, bound, bound is None, limit))
    cache = prepared.verdicts or VerdictCache()
    failing_hits = sum(1 for t in traces if t.outcome and t.outcome.kind and t.outcome.verdict_cached)
    return _runs(traces), cache.hits, cache.checked, failing_hits


def _same_runs_with_and_without(runner: str, bound: int | None, limit: int | None) -> tuple:
    (plain, *nothing), (cached, hits, checked, failing_hits) = map_forked(
        _explore, [(False, runner, bound, limit), (True, runner, bound, limit)], 2)
    assert nothing == [0, 0, 0]
    assert cached == plain
    complete = sum(1 for run in plain if not run[1])
    assert hits + checked == complete and hits > complete / 2
    return plain, hits, failing_hits


def test_the_cache_changes_no_run_of_a_bounded_exploration():
    """Every schedule of the race on legacy within two preemptions (failures among them), by
    the default runner: with the cache, the same runs, outcomes and final states."""
    runs, hits, _ = _same_runs_with_and_without("prefix", 2, None)
    assert any(run[3][1] for run in runs if run[3])  # some failed
    assert len({run[3][0] for run in runs if run[3]}) > 1


def test_the_cache_changes_no_run_forked_from_boot():
    _same_runs_with_and_without("fork-from-boot", None, 60)


@pytest.mark.slow_explore
def test_the_cache_changes_no_run_of_a_whole_exploration():
    """Every schedule of the race on legacy (a minute): failing runs hit the cache too.  Some
    final states carry different verdicts (a call lost or not): the digest alone would not do."""
    runs, hits, failing_hits = _same_runs_with_and_without("prefix", None, None)
    failing = sum(1 for run in runs if run[3] and run[3][1])
    assert failing > 40 and failing_hits > failing / 2, (failing, failing_hits)
