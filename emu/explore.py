"""Exploring the schedules of two (or more) tasks: stateless depth-first search over the
choice of CPU at each scheduling point, with optional preemption bounding (CHESS) and a
sleep-set partial-order reduction, plus seeded PCT for spaces too large to enumerate.

Nothing here knows what the tasks do.  A runner executes one schedule from the same
initial state (in a fresh process, typically) and reports the path it took: at each
scheduling point, which CPUs were enabled, which one ran, and the footprint of the step it
ran (emu.footprint).  From those paths the search decides the next prefixes to try.

Sleep sets (Godefroid): after the subtree where CPU c ran first from a node has been
explored, every sibling subtree may skip running c's same step until something dependent
on it has run.  The reduction is sound for the outcomes of complete runs: every
equivalence class of runs (orderings of the same dependent steps) is still visited.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

from .footprint import Footprint


@dataclass(frozen=True)
class Node:
    """One scheduling point of a run."""

    enabled: tuple[int, ...]
    chosen: int
    footprint: Footprint  # of the step the chosen CPU ran from here
    sleep: tuple[tuple[int, Footprint], ...] = ()  # sleeping CPUs here, with their next steps
    preemptions: int = 0  # before this choice


@dataclass
class RunTrace:
    nodes: list[Node]
    outcome: object = None  # what the runner found (None for a pruned run)
    schedule: str = ""  # the run as a replayable schedule string
    pruned: bool = False  # stopped because every enabled CPU was asleep


@dataclass(frozen=True)
class Plan:
    """What a runner must do: replay `prefix`, with `sleep` asleep at the last choice of it,
    then continue without preempting, keeping sleeping CPUs asleep while reducing."""

    prefix: tuple[int, ...]
    sleep: tuple[tuple[int, Footprint], ...] = ()
    reduce: bool = False


Runner = Callable[[Plan], RunTrace]


def preempts(nodes: Sequence[Node], i: int, choice: int) -> bool:
    """Is choosing `choice` at node i a preemption: the previous CPU could have gone on?"""
    if i == 0:
        return False
    prev = nodes[i - 1].chosen
    return choice != prev and prev in nodes[i].enabled


def continue_choice(current: int | None, enabled: Sequence[int], asleep: set[int]) -> int | None:
    """The runner's default beyond the prefix: stay on the current CPU, else the lowest awake."""
    awake = [c for c in enabled if c not in asleep]
    if not awake:
        return None
    return current if current in awake else min(awake)


def next_sleep(sleep: dict[int, Footprint], chosen: int, fp: Footprint) -> dict[int, Footprint]:
    """Sleeping steps that stay asleep after `chosen` ran a step with footprint fp."""
    return {c: s for c, s in sleep.items() if c != chosen and not s.conflicts(fp)}


@dataclass
class _Frame:
    node: Node
    done: dict[int, Footprint] = field(default_factory=dict)  # explored first moves here


def explore(runner: Runner, max_preemptions: int | None = None, reduce: bool = True,
            limit: int | None = None) -> Iterator[RunTrace]:
    """Depth-first enumeration of schedules; yields each run (pruned ones included)."""
    path: list[_Frame] = []
    plan = Plan(())
    runs = 0
    while True:
        trace = runner(plan)
        runs += 1
        yield trace
        branch = len(plan.prefix) - 1
        if len(trace.nodes) <= branch:
            # The run broke before its branch point (the runner reports why): count it, and
            # go on with the rest of the tree as if this choice had been explored.
            path[branch].done[plan.prefix[-1]] = path[branch].node.footprint
            del path[branch + 1:]
            plan = _backtrack(path, max_preemptions, reduce)
            if plan is None:
                return
            continue
        if branch >= 0:
            frame = path[branch]
            new = trace.nodes[branch]
            frame.done[new.chosen] = new.footprint
            # The path now goes through the new choice; the node's sleep set stays its own.
            frame.node = replace(new, sleep=frame.node.sleep)
            del path[branch + 1:]
        for node in trace.nodes[branch + 1:]:
            path.append(_Frame(node, {node.chosen: node.footprint}))
        if limit is not None and runs >= limit:
            return
        plan = _backtrack(path, max_preemptions, reduce)
        if plan is None:
            return


def _backtrack(path: list[_Frame], max_preemptions: int | None, reduce: bool) -> Plan | None:
    nodes = [f.node for f in path]
    for i in range(len(path) - 1, -1, -1):
        frame = path[i]
        asleep = dict(frame.node.sleep) if reduce else {}
        for alt in sorted(frame.node.enabled):
            if alt in frame.done or alt in asleep:
                continue
            cost = frame.node.preemptions + (1 if preempts(nodes, i, alt) else 0)
            if max_preemptions is not None and cost > max_preemptions:
                continue
            sleep = {**asleep, **frame.done} if reduce else {}
            del path[i + 1:]
            return Plan(tuple(n.chosen for n in nodes[:i]) + (alt,), tuple(sorted(sleep.items())), reduce)
    return None


@dataclass
class PCT:
    """Probabilistic concurrency testing (Burckhardt et al.): random distinct priorities per
    CPU and d-1 random steps at which the running CPU drops to the lowest priority; always run
    the highest-priority enabled CPU.  Finds any bug of depth d with probability at least
    1/(n k^(d-1)) per run for n CPUs and k steps."""

    seed: int
    depth: int
    nr_cpus: int
    est_steps: int
    priorities: dict[int, int] = field(init=False)
    change_points: set[int] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        order = list(range(self.nr_cpus))
        rng.shuffle(order)
        self.priorities = {cpu: self.depth + rank for rank, cpu in enumerate(order)}
        self.change_points = set(rng.sample(range(1, max(self.est_steps, self.depth) + 1), self.depth - 1))

    def choose(self, step: int, current: int | None, enabled: Sequence[int]) -> int:
        if step in self.change_points and current is not None:
            self.priorities[current] = self.depth - len([p for p in self.change_points if p <= step])
        return max(enabled, key=lambda c: self.priorities[c])
