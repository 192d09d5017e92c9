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

    def run(self) -> RunTrace:
        self.pc = {c: 0 for c in self.programs}
        self.logs = {c: [] for c in self.programs}
        while self.step():
            pass
        outcome = None if self.pruned else (tuple(sorted(self.state.items())),
                                            tuple(tuple(v) for _, v in sorted(self.logs.items())))
        return RunTrace(self.nodes, outcome, " ".join(str(n.chosen) for n in self.nodes), self.pruned)

    def step(self) -> bool:
        enabled = tuple(c for c in sorted(self.programs) if self.pc[c] < len(self.programs[c]))
        if not enabled:
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
        var, op = self.programs[choice][self.pc[choice]]
        x = self.state.get(var, 1)
        if op == "r":
            self.logs[choice].append((var, x))
            fp = Footprint(frozenset({var}), frozenset())
        else:
            k, c = op[1:].split("+")
            self.state[var] = x * int(k) + int(c)
            fp = Footprint(frozenset(), frozenset({var}))
        self.pc[choice] += 1
        node_sleep = tuple(sorted(self.sleep.items())) if i >= branch else ()
        self.nodes.append(Node(enabled, choice, fp, node_sleep, 0))
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
