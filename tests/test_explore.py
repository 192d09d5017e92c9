"""Exploring schedules: the reduction against plain enumeration, preemption bounding, the
claims over every schedule, splitting the search, parallel runs and seeded random testing."""

from __future__ import annotations

import json
import random

import pytest

from emu.explore import Plan, RunTrace, Node, Search, continue_choice, explore, next_sleep
from emu.footprint import Footprint
from ftrace_core.cli import main
from ftrace_core.kernels import VARIANTS
from ftrace_core.explore import cross_replay, explore_random, explore_variant, map_forked
from ftrace_core.scenario import load_scenario, parse_scenario, run_scenario

RACE = load_scenario("race")
SMALL = parse_scenario("""
cpu 0: echo function > current_tracer
cpu 1: echo get_current_pid > set_ftrace_filter
cpu 1: call workload_getpid
""", "small.scn")


def test_the_reduction_reaches_every_final_state_plain_enumeration_reaches():
    plain, reduced = map_forked(lambda reduce: explore_variant(SMALL, "fixed", reduce=reduce), [False, True], 2)
    assert plain.complete and reduced.complete
    assert reduced.schedules < plain.schedules / 10
    assert len(plain.final_states) > 1
    assert reduced.final_states == plain.final_states
    assert set(reduced.kinds) == set(plain.kinds)


@pytest.fixture(scope="module")
def bounded():
    """Plain enumeration of the race within 2 preemptions, on each variant."""
    return dict(zip(("legacy", "seed", "fixed"),
                    map_forked(lambda v: explore_variant(RACE, v, max_preemptions=2, reduce=False),
                               ["legacy", "seed", "fixed"], 2)))


def test_bounded_exploration_finds_the_race_on_old_kernels_only(bounded):
    for variant in ("legacy", "seed"):
        r = bounded[variant]
        assert r.failing_schedules, variant
        assert all("ftrace faulted on writing race_mod_" in kind for kind in r.kinds)
        assert r.failing_preemptions[r.shortest_failing] == 2  # the race needs two preemptions
    assert bounded["fixed"].schedules >= bounded["legacy"].schedules
    assert bounded["fixed"].failing_schedules == []


def test_bounded_dpor_gives_plain_enumerations_verdict_within_the_bound(bounded):
    """emu.dpor within a preemption bound (a CPU tried where a race is and where its CPU's
    run of steps began, no sleep sets) against plain enumeration within the same bound:
    the same final states and failures, on the kernel the race breaks and the one it does
    not, in fewer runs."""
    reduced = dict(zip(("legacy", "fixed"), map_forked(
        lambda v: explore_variant(RACE, v, max_preemptions=2, reduce=True), ["legacy", "fixed"], 2)))
    for variant, r in reduced.items():
        plain = bounded[variant]
        assert r.complete and r.por == "dpor" and r.preemption_bound == 2
        assert r.final_states == plain.final_states and set(r.kinds) == set(plain.kinds), variant
        assert r.runs < plain.runs
        assert all(r.failing_preemptions[s] <= 2 for s in r.failing_schedules)
    assert reduced["legacy"].failing_schedules and not reduced["fixed"].failing_schedules


def test_failing_schedules_replay_the_same_way_elsewhere(bounded):
    legacy, seed = bounded["legacy"], bounded["seed"]
    assert sorted(legacy.failing_schedules) == sorted(seed.failing_schedules)  # "same behaviour as previously"
    on_fixed = cross_replay(RACE, legacy.failing_schedules, "fixed")
    assert on_fixed["clean"] == on_fixed["replayed"] == len(legacy.failing_schedules)
    # and through the user's command, with a call-site point per record
    r = run_scenario(RACE, "legacy", legacy.shortest_failing)
    assert r.ftrace_disabled and r.faulting_ip.endswith("[race_mod]")
    fixed = run_scenario(RACE, "fixed", legacy.shortest_failing)
    assert all(fixed.invariants.values()), fixed.violations


def _same_runs(a, b) -> None:
    """Two explorations made the same runs in the same order, with the same outcomes."""
    assert (a.runs, a.pruned, a.schedules, a.complete) == (b.runs, b.pruned, b.schedules, b.complete)
    assert a.seen == b.seen and a.final_states == b.final_states and a.kinds == b.kinds
    assert a.failing_schedules == b.failing_schedules and a.failing_kind == b.failing_kind


def test_the_prefix_runner_gives_the_runs_of_forking_from_boot(bounded):
    """The default runner resumes each schedule from a paused fork on its prefix; the old one
    forks the booted state for each.  Same runs, schedule for schedule, on a variant that
    fails (plain enumeration, bounded: the `bounded` fixture ran the default runner) and on
    one that does not (the sleep-set reduction, a checkpoint after every step, for a while)."""
    def old(v: str):
        if v == "legacy":
            return explore_variant(RACE, v, max_preemptions=2, reduce=False, runner="fork-from-boot")
        return explore_variant(RACE, v, limit=80, runner="fork-from-boot")

    legacy_old, fixed_old = map_forked(old, ["legacy", "fixed"], 2)
    assert bounded["legacy"].runner == "prefix" and bounded["legacy"].checkpoints > 0
    _same_runs(bounded["legacy"], legacy_old)
    fixed = explore_variant(RACE, "fixed", limit=80, threshold_s=0.0)
    assert fixed.checkpoints > fixed.runs and fixed.resumed_steps > 10 * fixed.runs
    _same_runs(fixed, fixed_old)
    assert len(fixed.final_states) > 1 and not fixed.failing_schedules
    # every failing schedule fails again, the same way, when replayed on its own
    replayed = cross_replay(RACE, bounded["legacy"].failing_schedules, "legacy")
    assert replayed["failing"] == replayed["replayed"] == len(bounded["legacy"].failing_schedules) > 0
    assert replayed["kind_of"] == bounded["legacy"].failing_kind


@pytest.mark.slow_explore
def test_every_variants_verdict_is_the_same_under_both_runners():
    """Every schedule of the race on every variant (minutes): the same runs under both
    runners, and every failing schedule fails again, the same way, when replayed."""
    def both(v: str):
        return explore_variant(RACE, v), explore_variant(RACE, v, runner="fork-from-boot")

    for v, (new, old) in zip(VARIANTS, map_forked(both, list(VARIANTS), 2)):
        assert new.complete and new.runner == "prefix" and old.runner == "fork-from-boot"
        _same_runs(new, old)
        assert bool(new.failing_schedules) == (v in ("legacy", "seed")), v
        if new.failing_schedules:
            assert cross_replay(RACE, new.failing_schedules, v)["kind_of"] == new.failing_kind


#: A toy program per CPU: (variable, operation) per step.  Steps on one variable do not
#: commute, steps on different ones do; three CPUs, so that a node can have two alternatives.
TOY = {0: [("x", "+1"), ("y", "*2"), ("x", "*3")], 1: [("x", "*2"), ("z", "+5"), ("y", "+1")],
       2: [("z", "*2"), ("x", "+2")]}


def toy_runner(programs: dict, broken: frozenset = frozenset()):
    """Runs a schedule of programs in this process as the real runner would (the plan's
    prefix, then the current CPU while it can go on, sleeping CPUs skipped); a plan whose
    prefix is in `broken` breaks before it starts, as a run that dies does."""
    def run(plan: Plan) -> RunTrace:
        if plan.prefix in broken:
            return RunTrace([], "broken", "")
        state, pc = {"x": 1, "y": 1, "z": 1}, {c: 0 for c in programs}
        nodes: list[Node] = []
        sleep: dict = {}
        current = None
        while True:
            enabled = tuple(c for c in programs if pc[c] < len(programs[c]))
            if not enabled:
                break
            i = len(nodes)
            if i < len(plan.prefix):
                choice = plan.prefix[i]
                if plan.reduce and i == len(plan.prefix) - 1:
                    sleep = dict(plan.sleep)
            else:
                choice = continue_choice(current, enabled, set(sleep) if plan.reduce else set())
                if choice is None:
                    return RunTrace(nodes, None, " ".join(str(n.chosen) for n in nodes), pruned=True)
            var, op = programs[choice][pc[choice]]
            state[var] = state[var] + int(op[1:]) if op[0] == "+" else state[var] * int(op[1:])
            pc[choice] += 1
            fp = Footprint(frozenset({var}), frozenset({var}))
            pre = (nodes[-1].preemptions if nodes else 0) + (
                1 if nodes and nodes[-1].chosen != choice and nodes[-1].chosen in enabled else 0)
            nodes.append(Node(enabled, choice, fp, tuple(sorted(sleep.items())) if i >= len(plan.prefix) - 1 else (),
                              pre))
            if plan.reduce and i >= len(plan.prefix) - 1:
                sleep = next_sleep(sleep, choice, fp)
            current = choice
        return RunTrace(nodes, tuple(sorted(state.items())), " ".join(str(n.chosen) for n in nodes))
    return run


def _runs(traces) -> list:
    return [(t.schedule, t.pruned, t.outcome, [(n.enabled, n.chosen, n.sleep, n.preemptions) for n in t.nodes])
            for t in traces]


def _split_at_random(runner, bound, reduce, seed: int, most: int, searches: int = 3) -> list:
    """Every run of a search split at random: up to `searches` searches in progress, advanced
    one run at a time in a random order, each asked at random points to give away the
    alternatives at its few shallowest nodes, which become searches of their own.  Stops
    after `most` runs (a split that repeats work can make many more)."""
    rng = random.Random(seed)
    waiting: list = [None]  # Branches still to explore (None: the whole tree)
    active: list = []
    visits = []
    while waiting or active:
        while waiting and len(active) < searches:
            search = Search(runner, bound, reduce, waiting.pop(rng.randrange(len(waiting))))
            active.append((search, search.visits()))
        search, it = rng.choice(active)
        visit = next(it, None)
        if visit is None:
            active.remove((search, it))
            continue
        visits.append(visit)
        if len(visits) > most:
            break
        if rng.random() < 0.3:
            waiting += search.give_away(rng.choice([1, 2, None]), keep=rng.choice([0, 1]))
    return visits


@pytest.mark.parametrize("cpus", [2, 3])
@pytest.mark.parametrize("reduce,bound", [(False, None), (True, None), (False, 1), (False, 2), (True, 2)])
def test_a_search_split_anywhere_makes_the_runs_of_one_search_in_the_same_order(cpus, reduce, bound):
    """Branches handed over at any point, explored in any order, interleaved: their runs,
    sorted by their places in the sequential order, are those of one search, run for run
    (the sleep sets, preemptions and outcomes included), some runs breaking on the way."""
    programs = {c: TOY[c] for c in range(cpus)}
    plans: list = []

    def recording(plan: Plan) -> RunTrace:
        plans.append(plan.prefix)
        return toy_runner(programs)(plan)

    whole = list(Search(recording, bound, reduce).visits())
    orders = [v.order for v in whole]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)  # the search's own order
    runner = toy_runner(programs, broken=frozenset(plans[3::7]))
    one = list(Search(runner, bound, reduce).visits())
    assert [v.trace for v in one] == list(explore(runner, bound, reduce))
    assert any(v.broke for v in one) and len(one) > 3
    for seed in range(6):
        split = sorted(_split_at_random(runner, bound, reduce, seed, len(one)), key=lambda v: v.order)
        assert [v.order for v in split] == [v.order for v in one]
        assert [v.broke for v in split] == [v.broke for v in one]
        assert _runs(v.trace for v in split) == _runs(v.trace for v in one)


def test_a_branchs_subtree_is_a_stretch_of_the_whole_search():
    """explore(root=branch) makes the runs the whole search makes below that node, in the
    same order; a search that gave everything away has nothing left to do."""
    runner = toy_runner(TOY)
    whole = list(Search(runner, None, True).visits())
    search = Search(runner, None, True)
    visits = search.visits()
    assert next(visits) == whole[0]
    branches = search.give_away()  # every node of the first run with an alternative
    assert len(branches) > 2 and [b.order for b in branches] == sorted(b.order for b in branches)
    assert list(visits) == []
    for branch in branches:
        depth = len(branch.order)
        below = [v.trace for v in whole if len(v.order) > depth and v.order[:depth] == branch.order
                 and v.order[depth] > 0]
        assert list(explore(runner, None, True, root=branch)) == below != []
    assert sum(len(list(explore(runner, None, True, root=b))) for b in branches) == len(whole) - 1


def test_more_jobs_give_identical_results():
    one = explore_variant(RACE, "seed", max_preemptions=1, reduce=False, jobs=1)
    two = explore_variant(RACE, "seed", max_preemptions=1, reduce=False, jobs=2)
    assert (one.schedules, sorted(one.failing_schedules), one.final_states) == \
        (two.schedules, sorted(two.failing_schedules), two.final_states)


def test_random_mode_is_seeded_and_reports_runs():
    a = explore_random(RACE, "legacy", runs=12, seed=7)
    b = explore_random(RACE, "legacy", runs=12, seed=7)
    assert a.random_runs == 12 and a.runs == 12 and a.schedules <= 12
    assert (a.failing_seeds, sorted(a.failing_schedules)) == (b.failing_seeds, sorted(b.failing_schedules))
    for schedule in a.failing_schedules:
        assert run_scenario(RACE, "legacy", schedule).ftrace_disabled


def test_explore_json_from_the_cli(capsys):
    assert main(["explore", "--all-variants", "--max-preemptions", "1", "--jobs", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data["variants"]) == list(VARIANTS)
    for entry in data["variants"].values():
        for key in ("schedules", "failing", "failing_schedules", "shortest_failing", "preemption_bound", "seconds"):
            assert key in entry
        assert entry["preemption_bound"] == 1 and entry["reduction"] is False


@pytest.mark.parametrize("args,message", [
    (["explore", "--granularity", "huge"], "unknown granularity 'huge'"),
    (["explore", "--runner", "magic"], "unknown runner 'magic': expected one of prefix, fork-from-boot"),
    (["explore", "--variant", "old"], "unknown variant 'old'"),
    (["explore", "--jobs", "0"], "--jobs must be at least 1"),
    (["explore", "--variant", "seed", "--all-variants"], "not both"),
    (["explore", "nosuch.scn"], "nosuch.scn: cannot read scenario"),
    (["explore", "--random", "0"], "--random must be at least 1, got 0"),
    (["explore", "--random", "-5"], "--random must be at least 1, got -5"),
    (["explore", "--limit", "0"], "--limit must be at least 1, got 0"),
    (["explore", "--limit", "-3"], "--limit must be at least 1, got -3"),
    (["explore", "--random", "5", "--cluster", "local"], "--cluster explores every schedule"),
    (["explore", "--por", "magic"], "unknown --por 'magic': expected one of dpor, sleep-sets"),
    (["explore", "--footprints", "fine"], "unknown --footprints 'fine': expected one of page, coarse"),
    (["explore", "--por", "dpor", "--variant", "seed", "--jobs", "2"], "use --por sleep-sets"),
    (["explore", "--por", "sleep-sets", "--reduction", "-k", "1"], "use --por dpor (in one search) or --no-reduction"),
    (["explore", "--variant", "seed", "--jobs", "2", "--reduction", "-k", "1"], "bounded dpor) explores in one search"),
])
def test_explore_bad_input_exits_2(capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_map_forked_passes_each_childs_progress_to_the_parent_as_it_runs():
    """Variants explored in parallel still show their counts (explore's progress bar)."""
    import os

    def work(item, tick):
        for i in range(item):
            tick((item, i, os.getpid()))
        return item * 10

    seen: list = []
    assert map_forked(work, [3, 5, 200], 2, progress=lambda index, value: seen.append((index, value))) == [30, 50, 2000]
    for index, n in enumerate([3, 5, 200]):
        mine = [v for i, v in seen if i == index]
        assert [v[1] for v in mine] == list(range(n))  # every message, in order, none lost
        assert len({v[2] for v in mine}) == 1 and mine[0][2] != os.getpid()  # from its own child


def test_the_cli_replays_each_variants_failing_schedules_on_the_others_side_by_side():
    """explore's cross-replay (cli._cross): with --jobs 2 the replays of one variant's failing
    schedules on each other variant go side by side, with the result one process gives."""
    from ftrace_core.cli import _cross
    from ftrace_core.explore import VariantReport

    shortest = "0@lock:ftrace_lock#1 1@lock:module_mutex#2 0@ftrace_arch_code_modify_prepare#1 1 0"
    reports = {v: VariantReport(v) for v in ("legacy", "seed", "fixed")}
    reports["legacy"].failing_schedules = [shortest, "1@ftrace_module_init 0@ftrace_arch_code_modify_prepare "
                                                     "1@complete_formation 0 1"]
    one = _cross(RACE, reports, "coarse", 1000, "breakpoints", jobs=1)
    assert _cross(RACE, reports, "coarse", 1000, "breakpoints", jobs=2) == one
    assert set(one) == {"legacy_on_seed", "legacy_on_fixed"}
    assert one["legacy_on_seed"]["failing"] == one["legacy_on_seed"]["replayed"] == 2
    assert one["legacy_on_fixed"]["failing"] == 0 and one["legacy_on_fixed"]["clean"] == 2
