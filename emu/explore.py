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

Splitting the search (Search.give_away, Branch): the untried alternatives at a node, with
everything below them, can be explored by another search, in another process or machine,
with the same runs as a whole; each run carries its place in the sequential order
(Visit.order), so that what several searches find can be put back in that order.
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
    preemptions: int = 0  # in the run so far, this choice included


@dataclass
class RunTrace:
    nodes: list[Node]
    outcome: object = None  # what the runner found (None for a pruned run)
    schedule: str = ""  # the run as a replayable schedule string
    pruned: bool = False  # stopped because every enabled CPU was asleep


@dataclass(frozen=True)
class Plan:
    """What a runner must do: replay `prefix`, with `sleep` asleep at its branch point,
    then continue without preempting, keeping sleeping CPUs asleep while reducing."""

    prefix: tuple[int, ...]
    sleep: tuple[tuple[int, Footprint], ...] = ()
    reduce: bool = False
    #: The index in prefix of the first choice no earlier run made: the last one, unless
    #: given (emu.dpor's prefixes go on past it).
    branch_point: int | None = None
    #: Stop the run (pruned) rather than make a choice beyond this many preemptions
    #: (emu.dpor's bounded search: its wakeup sequences and sleep sets may ask for one).
    max_preemptions: int | None = None

    def __post_init__(self) -> None:
        if self.branch_point is None:
            object.__setattr__(self, "branch_point", len(self.prefix) - 1)


Runner = Callable[[Plan], RunTrace]


def preempts(nodes: Sequence[Node], i: int, choice: int) -> bool:
    """Is choosing `choice` at node i a preemption: the previous CPU could have gone on?"""
    return _preempts(nodes[i - 1].chosen if i else None, nodes[i], choice)


def continue_choice(current: int | None, enabled: Sequence[int], asleep: set[int]) -> int | None:
    """The runner's default beyond the prefix: stay on the current CPU, else the lowest awake."""
    awake = [c for c in enabled if c not in asleep]
    if not awake:
        return None
    return current if current in awake else min(awake)


def next_sleep(sleep: dict[int, Footprint], chosen: int, fp: Footprint) -> dict[int, Footprint]:
    """Sleeping steps that stay asleep after `chosen` ran a step with footprint fp."""
    return {c: s for c, s in sleep.items() if c != chosen and not s.conflicts(fp)}


@dataclass(frozen=True)
class Branch:
    """The untried alternatives at one node of a run, as a unit of work.  Exploring them,
    each with its whole subtree, makes the runs the sequential search makes there whatever
    happens elsewhere: with sleep sets (unlike DPOR) a subtree's runs depend only on its
    plan.  A node's siblings stay together, in order, since each one's sleep set holds the
    first steps of the ones before it."""

    prefix: tuple[int, ...]  # the choices before the node
    order: tuple[int, ...]  # their ranks (see Visit.order)
    node: Node  # as the search holds it: its own sleep set; the choice made last, with its first step
    done: tuple[tuple[int, Footprint], ...] = ()  # the choices explored here so far, with their first steps


@dataclass(frozen=True)
class Visit:
    """A run of a search, and its place in the order of the sequential search."""

    trace: RunTrace
    #: The rank of each choice of the run's plan: 0 for the choice a node was first reached
    #: with, 1 + c for CPU c tried there afterwards.  Depth-first search takes alternatives
    #: in the order of their CPUs, so it makes its runs in increasing order (Python's order
    #: of tuples: a prefix first): runs found in any order sort back into its order.
    order: tuple[int, ...]
    broke: bool = False  # the run broke before its branch point


@dataclass
class _Frame:
    node: Node
    done: dict[int, Footprint] = field(default_factory=dict)  # explored first moves here
    rank: int = 0  # of node.chosen (Visit.order)
    given: bool = False  # its untried alternatives were handed over (Search.give_away)


class Search:
    """Depth-first search of a subtree: the whole tree, or a Branch's.

    visits() makes the runs; between two of them, give_away() hands over the untried
    alternatives at the shallowest nodes of the path as Branches, for another search to
    explore: this one then leaves them alone.  The runs of both together are the runs of
    the search that kept them."""

    def __init__(self, runner: Runner, max_preemptions: int | None = None, reduce: bool = True,
                 root: Branch | None = None):
        self.runner, self.max_preemptions, self.reduce, self.root = runner, max_preemptions, reduce, root
        self._path: list[_Frame] = [] if root is None else [_Frame(root.node, dict(root.done))]
        # The choices above the path (a Branch's prefix), never backtracked to.
        self._base = () if root is None else root.prefix
        self._base_order = () if root is None else root.order

    def visits(self) -> Iterator[Visit]:
        step = (Plan(()), ()) if self.root is None else self._backtrack()
        while step is not None:
            plan, order = step
            trace = self.runner(plan)
            broke = self._follow(plan, trace)
            yield Visit(trace, order, broke)
            step = self._backtrack()

    def give_away(self, most: int | None = None, keep: int = 0) -> list[Branch]:
        """The untried alternatives at the `most` shallowest nodes that have some (all of
        them if None), leaving this search at least `keep` such nodes."""
        open_nodes = [i for i, frame in enumerate(self._path) if not frame.given and self._alternatives(i)]
        count = len(open_nodes) - keep if most is None else min(most, len(open_nodes) - keep)
        branches = []
        for i in open_nodes[:max(count, 0)]:
            frame = self._path[i]
            frame.given = True
            branches.append(Branch(self._choices(i), self._ranks(i), frame.node, tuple(sorted(frame.done.items()))))
        return branches

    def _follow(self, plan: Plan, trace: RunTrace) -> bool:
        """Take in a run of plan; True if it broke before its branch point."""
        depth = len(plan.prefix) - 1  # of the branch point (-1: the first run of the tree)
        i = depth - len(self._base)  # its frame
        if len(trace.nodes) <= depth:
            # The run broke before its branch point (the runner reports why): count it, and
            # go on with the rest of the tree as if this choice had been explored.
            frame = self._path[i]
            frame.done[plan.prefix[-1]] = frame.node.footprint
            del self._path[i + 1:]
            return True
        if i >= 0:
            frame, new = self._path[i], trace.nodes[depth]
            frame.done[new.chosen] = new.footprint
            # The path now goes through the new choice; the node's sleep set stays its own.
            frame.node = replace(new, sleep=frame.node.sleep)
            frame.rank = 1 + new.chosen
            del self._path[i + 1:]
        self._path.extend(_Frame(node, {node.chosen: node.footprint}) for node in trace.nodes[depth + 1:])
        return False

    def _alternatives(self, i: int) -> list[int]:
        """The CPUs the search has still to try at frame i, in the order it tries them."""
        frame = self._path[i]
        node = frame.node
        asleep = dict(node.sleep) if self.reduce else {}
        prev = self._path[i - 1].node.chosen if i else (self._base[-1] if self._base else None)
        alts = []
        for alt in sorted(node.enabled):
            if alt in frame.done or alt in asleep:
                continue
            # node.preemptions counts the choice made here: the alternative's replaces it
            cost = (node.preemptions - (1 if _preempts(prev, node, node.chosen) else 0)
                    + (1 if _preempts(prev, node, alt) else 0))
            if self.max_preemptions is not None and cost > self.max_preemptions:
                continue
            alts.append(alt)
        return alts

    def _backtrack(self) -> tuple[Plan, tuple[int, ...]] | None:
        for i in range(len(self._path) - 1, -1, -1):
            frame = self._path[i]
            alts = [] if frame.given else self._alternatives(i)
            if alts:
                asleep = dict(frame.node.sleep) if self.reduce else {}
                sleep = {**asleep, **frame.done} if self.reduce else {}
                del self._path[i + 1:]
                plan = Plan(self._choices(i) + (alts[0],), tuple(sorted(sleep.items())), self.reduce)
                return plan, self._ranks(i) + (1 + alts[0],)
        return None

    def _choices(self, i: int) -> tuple[int, ...]:
        return self._base + tuple(f.node.chosen for f in self._path[:i])

    def _ranks(self, i: int) -> tuple[int, ...]:
        return self._base_order + tuple(f.rank for f in self._path[:i])


def _preempts(prev: int | None, node: Node, choice: int) -> bool:
    return prev is not None and choice != prev and prev in node.enabled


def explore(runner: Runner, max_preemptions: int | None = None, reduce: bool = True,
            limit: int | None = None, root: Branch | None = None) -> Iterator[RunTrace]:
    """Depth-first enumeration of schedules (of a Branch's subtree only, with root); yields
    each run (pruned ones included)."""
    runs = 0
    for visit in Search(runner, max_preemptions, reduce, root).visits():
        runs += 1
        yield visit.trace
        # A run that broke before its branch point never ended a limited search.
        if limit is not None and runs >= limit and not visit.broke:
            return


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
