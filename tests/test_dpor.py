"""Optimal DPOR (emu.dpor) on toy programs against plain enumeration and sleep sets: the
same outcomes, one complete run per class of equivalent runs (Mazurkiewicz traces), and
none cut short; then on the race scenario."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from emu.dpor import Dpor
from emu.explore import Node, Plan, RunTrace, continue_choice, explore, next_sleep
from emu.footprint import Footprint

#: A program: per CPU, a list of steps (variable, op): "w*k+c" sets x = x*k + c (order
#: matters between two writes), "r" reads x into the CPU's log (order matters against writes).


@dataclass
class Toy:
    programs: dict[int, list[tuple[str, str]]]
    plan: Plan
    state: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)
    pc: dict = field(default_factory=dict)
    nodes: list = field(default_factory=list)
    sleep: dict = field(default_factory=dict)
    current: int | None = None
    pruned: bool = False
    held: dict = field(default_factory=dict)

    def _can_run(self, cpu: int) -> bool:
        program, pc = self.programs[cpu], self.pc[cpu]
        if pc >= len(program):
            return False
        var, op = program[pc]
        return op != "lock" or self.held.get(var) in (None, cpu)

    def run(self) -> RunTrace:
        self.pc = {c: 0 for c in self.programs}
        self.logs = {c: [] for c in self.programs}
        while self.step():
            pass
        outcome = None if self.pruned else (tuple(sorted(self.state.items())),
                                            tuple((c, tuple(v)) for c, v in sorted(self.logs.items(), key=str)))
        return RunTrace(self.nodes, outcome, " ".join(str(n.chosen) for n in self.nodes), self.pruned)

    def step(self) -> bool:
        enabled = tuple(c for c in sorted(self.programs) if self._can_run(c))
        if not enabled:
            if any(self.pc[c] < len(p) for c, p in self.programs.items()):
                self.logs.setdefault("deadlock", []).append(True)
            return False
        plan, i = self.plan, len(self.nodes)
        branch = plan.branch_point
        if i < len(plan.prefix):
            choice = plan.prefix[i]
            if choice not in enabled:
                assert i > branch
                self.pruned = True
                return False
            if plan.reduce and i == branch:
                self.sleep = dict(plan.sleep)
        else:
            choice = continue_choice(self.current, enabled, set(self.sleep) if plan.reduce else set())
            if choice is None:
                self.pruned = True
                return False
        pre = self.nodes[-1].preemptions if self.nodes else 0
        if self.nodes and self.nodes[-1].chosen != choice and self.nodes[-1].chosen in enabled:
            pre += 1
            if plan.max_preemptions is not None and pre > plan.max_preemptions:
                self.pruned = True
                return False
        var, op = self.programs[choice][self.pc[choice]]
        x = self.state.get(var, 1)
        if op in ("lock", "unlock"):  # a mutex: taking it waits while another CPU holds it
            self.held[var] = choice if op == "lock" else None
            fp = Footprint(frozenset(), frozenset({("lock", var)}))
        elif op == "r":
            self.logs[choice].append((var, x))
            fp = Footprint(frozenset({var}), frozenset())
        else:
            k, c = op[1:].split("+")
            self.state[var] = x * int(k) + int(c)
            fp = Footprint(frozenset(), frozenset({var}))
        self.pc[choice] += 1
        node_sleep = tuple(sorted(self.sleep.items())) if i >= branch else ()
        self.nodes.append(Node(enabled, choice, fp, node_sleep, pre))
        if plan.reduce and i >= branch:
            self.sleep = next_sleep(self.sleep, choice, fp)
        self.current = choice
        return True


def runner(programs):
    return lambda plan: Toy(programs, plan).run()


def foata(trace: RunTrace) -> tuple:
    """The class of equivalent runs a run belongs to, as a canonical form: each step named by
    (CPU, its index on that CPU), grouped by the length of the longest dependent chain
    ending at it."""
    level: list[int] = []
    names: list[tuple[int, int]] = []
    count: dict[int, int] = {}
    for j, n in enumerate(trace.nodes):
        lv = 0
        for i in range(j):
            m = trace.nodes[i]
            if m.chosen == n.chosen or m.footprint.conflicts(n.footprint):
                lv = max(lv, level[i] + 1)
        level.append(lv)
        names.append((n.chosen, count.get(n.chosen, 0)))
        count[n.chosen] = count.get(n.chosen, 0) + 1
    return tuple(tuple(sorted(nm for nm, lv in zip(names, level) if lv == k)) for k in range(max(level, default=-1) + 1))


def random_programs(rng: random.Random, cpus: int, steps: int, nvars: int) -> dict:
    ops = []
    for c in range(cpus):
        ops.append([(f"v{rng.randrange(nvars)}", "r" if rng.random() < 0.4 else f"w{rng.randint(2, 5)}+{rng.randint(1, 9)}")
                    for _ in range(rng.randint(1, steps))])
    return dict(enumerate(ops))


def check(programs) -> tuple[int, int]:
    run = runner(programs)
    plain = list(explore(run, None, reduce=False))
    classes_all = {foata(t) for t in plain}
    dpor_runs = list(Dpor(run))
    complete = [t for t in dpor_runs if not t.pruned]
    assert {t.outcome for t in complete} == {t.outcome for t in plain}
    classes = [foata(t) for t in complete]
    assert set(classes) == classes_all  # every class reached ...
    assert len(classes) == len(set(classes))  # ... once
    assert not any(t.pruned for t in dpor_runs)  # and no run cut short
    sleep_sets = [t for t in explore(run, None, reduce=True) if not t.pruned]
    assert len(complete) <= len(sleep_sets)
    return len(complete), len(plain)


def test_independent_programs_need_one_run():
    assert check({0: [("x", "w2+1"), ("x", "r")], 1: [("y", "w3+1"), ("y", "r")]}) == (1, 6)


def test_two_writes_to_one_variable_need_two_runs():
    assert check({0: [("a", "w2+1"), ("x", "w2+1")], 1: [("b", "w2+1"), ("x", "w3+1")]})[0] == 2


def test_readers_of_one_write():
    # the write before both reads, between them, after both: 3 classes (the reads commute)
    assert check({0: [("x", "w2+1")], 1: [("x", "r")], 2: [("x", "r")]})[0] == 4


@pytest.mark.parametrize("seed", range(60))
def test_random_programs_reach_every_class_once(seed):
    rng = random.Random(seed)
    cpus = rng.choice((2, 2, 3))
    check(random_programs(rng, cpus, 5 if cpus == 2 else 3, rng.choice((1, 2, 3))))


def random_locked_programs(rng: random.Random, cpus: int, segments: int, nvars: int) -> dict:
    """Like random_programs, with some runs of one or two steps under one of two mutexes."""
    out = {}
    for c in range(cpus):
        ops = []
        for _ in range(rng.randint(1, segments)):
            body = [(f"v{rng.randrange(nvars)}", "r" if rng.random() < 0.4 else f"w{rng.randint(2, 5)}+{rng.randint(1, 9)}")
                    for _ in range(rng.randint(1, 2))]
            if rng.random() < 0.4:
                m = f"m{rng.randrange(2)}"
                body = [(m, "lock"), *body, (m, "unlock")]
            ops += body
        out[c] = ops
    return out


def check_bounded(programs, bound: int) -> tuple[int, int]:
    """Bounded DPOR against plain enumeration within the same preemption bound: the same
    outcomes, no more runs."""
    run = runner(programs)
    plain = [t for t in explore(run, bound, reduce=False) if not t.pruned]
    runs = list(Dpor(run, max_preemptions=bound))
    complete = [t for t in runs if not t.pruned]
    assert all(t.nodes[-1].preemptions <= bound for t in complete)
    assert {t.outcome for t in complete} == {t.outcome for t in plain}, (programs, bound)
    return len(complete), len(plain)


def _programs(seed: int) -> dict:
    rng = random.Random(seed)
    cpus = rng.choice((2, 2, 3))
    if seed % 2:
        return random_locked_programs(rng, cpus, 3 if cpus == 2 else 2, rng.choice((1, 2, 3)))
    return random_programs(rng, cpus, 5 if cpus == 2 else 3, rng.choice((1, 2, 3)))


def test_a_lock_released_then_taken_is_reversed_where_it_was_taken_first():
    """CPU 2 cannot take m0 right after CPU 1 releases it (the race DPOR sees): the other
    order begins before CPU 1 takes it (Flanagan and Godefroid's co-enabled steps)."""
    programs = {0: [("v1", "w3+1")], 1: [("m0", "lock"), ("v0", "w3+7"), ("m0", "unlock")],
                2: [("m0", "lock"), ("v0", "r"), ("v0", "r"), ("m0", "unlock")]}
    run = runner(programs)
    plain = {t.outcome for t in explore(run, None, reduce=False)}
    assert len(plain) == 2 and {t.outcome for t in Dpor(run) if not t.pruned} == plain


@pytest.mark.parametrize("seed", range(1, 200, 2))
def test_dpor_reaches_every_outcome_of_programs_with_locks(seed):
    programs = _programs(seed)
    run = runner(programs)
    assert {t.outcome for t in Dpor(run) if not t.pruned} == {t.outcome for t in explore(run, None, reduce=False)}


@pytest.mark.parametrize("seed", range(120))
def test_bounded_dpor_reaches_every_outcome_within_the_bound(seed):
    """Within a preemption bound (with and without locks, 2 and 3 CPUs): 1,000 more
    programs, twice as long, passed the same check for bounds 0 to 3 when this was written."""
    programs = _programs(seed)
    for bound in (0, 1, 2, 3):
        check_bounded(programs, bound)
