"""The prefix-sharing runner (emu.forktree) on a toy program, against running every schedule
in this process: the same runs in the same order, whatever the checkpoints; and no process
of the tree outlives the search, however it ends."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import pytest

from emu.explore import Node, Plan, RunTrace, continue_choice, explore, next_sleep
from emu.footprint import Footprint
from emu.forktree import ForkTree

#: Each CPU's program: (variable, operation) per step; the order of steps on one variable
#: decides its final value, steps on different variables commute.
PROGRAMS = {0: [("x", "+1"), ("y", "*2"), ("x", "*3")], 1: [("x", "*2"), ("z", "+5"), ("y", "+1")]}


@dataclass
class ToyRun:
    """A schedule of PROGRAMS being run, following emu.explore's plans as the real runner does."""

    plan: Plan
    die_at: tuple[int, ...] | None = None  # choices at which the process dies without a word
    raise_at: tuple[int, ...] | None = None
    state: dict = field(default_factory=lambda: {"x": 1, "y": 1, "z": 1})
    pc: dict = field(default_factory=lambda: {0: 0, 1: 0})
    nodes: list = field(default_factory=list)
    sleep: dict = field(default_factory=dict)
    current: int | None = None
    pruned: bool = False

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(n.chosen for n in self.nodes)

    @property
    def branching(self) -> bool:
        return sum(self.pc[c] < len(PROGRAMS[c]) and c not in self.sleep for c in PROGRAMS) > 1

    def redirect(self, plan: Plan) -> None:
        self.plan, self.sleep = plan, {}
        self.nodes = [Node(n.enabled, n.chosen, n.footprint, (), n.preemptions) for n in self.nodes]

    def step(self) -> bool:
        if self.choices == self.die_at:
            os._exit(3)
        if self.choices == self.raise_at:
            raise ValueError("toy step failed")
        enabled = tuple(c for c in PROGRAMS if self.pc[c] < len(PROGRAMS[c]))
        if not enabled or self.pruned:
            return False
        prefix, i = self.plan.prefix, len(self.nodes)
        if i < len(prefix):
            choice = prefix[i]
            if self.plan.reduce and i == len(prefix) - 1:
                self.sleep = dict(self.plan.sleep)
        else:
            choice = continue_choice(self.current, enabled, set(self.sleep) if self.plan.reduce else set())
            if choice is None:
                self.pruned = True
                return False
        var, op = PROGRAMS[choice][self.pc[choice]]
        self.state[var] = self.state[var] + int(op[1:]) if op[0] == "+" else self.state[var] * int(op[1:])
        self.pc[choice] += 1
        fp = Footprint(frozenset({var}), frozenset({var}))
        pre = (self.nodes[-1].preemptions if self.nodes else 0) + (
            1 if i and self.nodes[-1].chosen != choice and self.nodes[-1].chosen in enabled else 0)
        node_sleep = tuple(sorted(self.sleep.items())) if i >= len(prefix) - 1 else ()
        self.nodes.append(Node(enabled, choice, fp, node_sleep, pre))
        if self.plan.reduce and i >= len(prefix) - 1:
            self.sleep = next_sleep(self.sleep, choice, fp)
        self.current = choice
        return True

    def trace(self) -> RunTrace:
        schedule = " ".join(map(str, self.choices))
        outcome = None if self.pruned else tuple(sorted(self.state.items()))
        return RunTrace(self.nodes, outcome, schedule, self.pruned)


def in_process(plan: Plan) -> RunTrace:
    run = ToyRun(plan)
    while run.step():
        pass
    return run.trace()


def broken(why: str) -> RunTrace:
    return RunTrace([], f"broken: {why}", "")


def summary(traces) -> list:
    return [(t.schedule, t.pruned, t.outcome, [(n.enabled, n.chosen, n.sleep, n.preemptions) for n in t.nodes])
            for t in traces]


def descendants() -> list[tuple[int, str]]:
    """(pid, state) of every process below this one, zombies included."""
    parent: dict[int, int] = {}
    state: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)], state[int(entry)] = int(fields[1]), fields[0]
    mine, frontier = [], [os.getpid()]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        mine += [(c, state[c]) for c in kids]
        frontier += kids
    return mine


@pytest.mark.parametrize("reduce,bound", [(True, None), (False, None), (False, 1)])
@pytest.mark.parametrize("threshold", [0.0, 1e9])
def test_the_tree_gives_the_runs_of_running_each_schedule_from_the_start(reduce, bound, threshold):
    """threshold 0: a checkpoint after every step, so nearly every run resumes from one."""
    before = descendants()
    expected = summary(explore(in_process, bound, reduce))
    with ForkTree(ToyRun, broken, threshold_s=threshold) as tree:
        got = summary(explore(tree, bound, reduce))
    assert got == expected
    assert len({t[2] for t in expected if not t[1]}) > 3  # the order matters in this program
    if threshold == 0.0:
        # Only the runs that choose differently at the first point start from the beginning.
        assert tree.stats.checkpoints > 0 and tree.stats.from_start == len(PROGRAMS)
        assert tree.stats.resumed_steps >= tree.stats.runs
    else:
        assert tree.stats.checkpoints == 0 and tree.stats.from_start == tree.stats.runs
    assert descendants() == before


def test_a_run_that_raises_or_dies_is_reported_and_the_search_goes_on():
    def start(plan: Plan) -> ToyRun:
        return ToyRun(plan, die_at=(1, 0), raise_at=(0, 0, 1))

    before = descendants()
    with ForkTree(start, broken, threshold_s=0.0) as tree:
        traces = list(explore(tree, None, False))
    outcomes = [t.outcome for t in traces]
    assert "broken: ValueError: toy step failed" in outcomes
    assert "broken: a run died without a report" in outcomes
    assert len(traces) > 10
    assert descendants() == before


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_no_process_outlives_a_search_that_raises(error):
    before = descendants()
    with pytest.raises(error):
        with ForkTree(ToyRun, broken, threshold_s=0.0) as tree:
            for i, _ in enumerate(explore(tree, None, False)):
                if i == 5:
                    assert len(descendants()) > len(before)  # checkpoints waiting
                    raise error("stop")
    assert descendants() == before


def test_checkpoints_end_when_the_explorer_dies():
    """Killed outright (no cleanup), the explorer's ends of the connections close, and every
    checkpoint exits."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the explorer: leave checkpoints behind, say which, wait to be killed
        os.close(r)
        tree = ForkTree(ToyRun, broken, threshold_s=0.0)
        for i, _ in enumerate(explore(tree, None, False)):
            if i == 3:
                os.write(w, " ".join(str(cp.pid) for cp in tree._chain).encode() + b"\n")
                time.sleep(60)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        checkpoints = [int(p) for p in f.readline().split()]
    assert checkpoints and all(_alive(p) for p in checkpoints)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in checkpoints):
        time.sleep(0.05)
    assert not any(_alive(p) for p in checkpoints)


def _alive(pid: int) -> bool:
    """Running (an exited orphan waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_no_process_outlives_an_exploration_of_the_race_that_stops(error):
    """The same through explore_variant, whose progress callback raises (as Ctrl-C would)."""
    from ftrace_core.explore import explore_variant
    from ftrace_core.scenario import load_scenario

    before = descendants()

    def progress(report) -> None:
        if report.runs == 6:
            assert len(descendants()) > len(before) + 2  # checkpoints left behind
            raise error("stop")

    with pytest.raises(error):
        explore_variant(load_scenario("race"), "legacy", progress=progress, threshold_s=0.0)
    assert descendants() == before
