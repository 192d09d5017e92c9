"""Optimal dynamic partial-order reduction: source sets with wakeup trees (Abdulla, Aronis,
Jonsson and Sagonas, "Optimal dynamic partial order reduction", POPL 2014), over the same
runners as emu.explore.

Sleep sets alone (emu.explore) try every CPU at every scheduling point and rely on the sleep
sets to cut short what was covered; many runs end that way ("pruned": every CPU that could
run is asleep).  Here a point is branched only where a run shows a race: two steps of
different CPUs that conflict (emu.footprint), the first happening right before the second
(no step in between ordered after the first and before the second).  The run that reverses
the race starts from the point before the first step with a wakeup sequence: the steps
between them that do not depend on the first, then the second (if that sequence cannot start
here, a step of it that can and depends on nothing before it goes first; if none can, the
race cannot be reversed: the second step waits for the first, as a lock's taker for its
release).  Wakeup sequences are kept per point in a tree (here: its leaves, each a sequence
of steps with their footprints), so one is added only if no explored or pending sequence
already starts the same way up to the order of independent steps; with sleep sets on top, every complete run is of a different class of equivalent
runs, and none is cut short (Abdulla et al., theorem 7.5), as far as the footprints are exact
and no CPU has to wait for another (with locks, below, some runs may be cut short).

Steps are named by their CPU: from a given point, a CPU's next step is determined, and a
step moved past independent ones does the same thing (that is what independent means).  A
wakeup sequence may still ask, further on, for a CPU that cannot run where the sequence puts
it; the runner then stops that run without an outcome (RunTrace.pruned) and nothing is lost:
that order does not exist (a lock's other orders come from going back to where it was taken,
below).

A CPU that cannot run (it waits for a lock another holds) makes some races impossible to
reverse where they are: a lock released at i and taken at j.  Then, as Flanagan and Godefroid
do for steps that are not co-enabled ("Dynamic partial-order reduction", POPL 2005), the
reversal goes back to the latest earlier step that conflicts with j and beside which j's CPU
could run (the lock's taking), and it does so for every race over a lock.

Within a preemption bound (Coons, Musuvathi and McKinley, "Bounded partial-order reduction",
OOPSLA 2013), a run equivalent to the one wanted may need more preemptions than it: so no
sleep sets and no wakeup sequences, only a CPU to try first (source sets), and no other CPU
stands for it; and each reversal is tried also from where the first step's CPU began its
run of steps, where switching costs no preemption.  Runs that would go beyond the bound stop
there (pruned).  This is checked against plain enumeration within the same bound on
random programs with and without locks (tests/test_dpor.py) and on the race; it is not proved
here, so a bounded search reduces only when asked (`explore -k N --reduction`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

from .explore import Node, Plan, RunTrace, Runner, _preempts
from .footprint import Footprint


Step = tuple[int, Footprint]  # a step of a wakeup sequence: its CPU, and what it touched


@dataclass
class _Point:
    """A scheduling point of the path being explored."""

    node: Node  # as the latest run through here met it (its choice is the path's)
    sleep: dict[int, Footprint]  # asleep on arrival, with their next steps
    done: dict[int, Footprint] = field(default_factory=dict)  # first steps explored from here
    #: The wakeup tree's leaves still to explore from here, each a sequence of steps (with
    #: the footprints the run that asked for it saw: what later insertions compare against).
    pending: list[list[Step]] = field(default_factory=list)
    hb: int = 0  # bit i set: step i of the path happens before this one (this one included)
    after: list[int] = field(default_factory=list)  # its direct predecessors (Dpor._happens_before)


@dataclass
class DporStats:
    races: int = 0  # races found (pairs of steps)
    inserted: int = 0  # wakeup sequences added
    covered: int = 0  # races whose reversal was explored or pending already, or asleep
    irreversible: int = 0  # races whose second step cannot go first (it waits for the first)


def _weak_initials(seq: Sequence[Step], enabled: Sequence[int], next_steps: dict[int, Footprint]) -> set[int]:
    """WI(v): the CPUs that can start a run equivalent to one starting with v: a CPU whose
    first step in v depends on nothing before it in v, or (not in v at all) whose next step
    here is known and independent of all of v."""
    out: set[int] = set()
    seen: list[Footprint] = []
    in_seq: set[int] = set()
    for cpu, fp in seq:
        if cpu not in in_seq:
            in_seq.add(cpu)
            if not any(fp.conflicts(prior) for prior in seen):
                out.add(cpu)
        seen.append(fp)
    for cpu in enabled:
        if cpu not in in_seq:
            fp = next_steps.get(cpu)
            if fp is not None and not any(fp.conflicts(s) for s in seen):
                out.add(cpu)
    return out


def _on_a_lock(a: Footprint, b: Footprint) -> bool:
    """Do the two steps conflict over a lock (a ("lock", name) token)?  Then the second may
    wait for the first (a release, then the taking), where reversing their order means
    going back to the first CPU's taking of the lock."""
    shared = (a.writes & (b.reads | b.writes)) | (b.writes & a.reads)
    return any(isinstance(t, tuple) and t and t[0] == "lock" for t in shared)


def _without_first(seq: Sequence[Step], cpu: int) -> list[Step]:
    out = list(seq)
    for k, (c, _) in enumerate(out):
        if c == cpu:
            del out[k]
            break
    return out


def _initial(step: Step, rest: Sequence[Step]) -> bool:
    """Is step (a CPU's next one, with its footprint) a weak initial of rest: its CPU's first
    step in rest depends on nothing before it there, or (its CPU not in rest) it is
    independent of all of rest?"""
    cpu, fp = step
    if any(c == cpu for c, _ in rest):
        return cpu in _weak_initials(rest, (), {})
    return not any(fp.conflicts(f) for _, f in rest)


def _place(leaves: list[list[Step]], v: list[Step]) -> list[Step] | None:
    """Where v goes in the wakeup tree whose leaves these are (Abdulla et al.'s insert):
    walk down from the root, at each node into its first child (in order of insertion) whose
    step is a weak initial of what is left of v, taking that step out of it.  None if the
    walk reaches a leaf (v is covered); else the new leaf: the walk's path, then the rest."""
    path: list[Step] = []
    rest = list(v)
    candidates = leaves
    depth = 0
    while True:
        if any(len(leaf) == depth for leaf in candidates):
            return None
        chosen = None
        for leaf in candidates:  # the children, in order
            if _initial(leaf[depth], rest):
                chosen = leaf[depth]
                break
        if chosen is None:
            return path + rest
        path.append(chosen)
        rest = _without_first(rest, chosen[0]) if any(c == chosen[0] for c, _ in rest) else rest
        candidates = [leaf for leaf in candidates if leaf[depth][0] == chosen[0]]
        depth += 1


def _split(pending: list[list[Step]], chosen: int) -> tuple[list[list[Step]], list[list[Step]]]:
    """The leaves that do not start with chosen (they stay), and the tails of those that do
    (they go down to the next point, which the run reached by following them)."""
    stay = [leaf for leaf in pending if leaf[0][0] != chosen]
    down = [leaf[1:] for leaf in pending if leaf[0][0] == chosen and len(leaf) > 1]
    return stay, down


class Dpor:
    """Iterate for the runs: runner(plan) -> RunTrace is called once per run."""

    def __init__(self, runner: Runner, limit: int | None = None, max_preemptions: int | None = None):
        self.runner = runner
        self.limit = limit
        self.bound = max_preemptions
        self.stats = DporStats()
        self.path: list[_Point] = []

    def __iter__(self) -> Iterator[RunTrace]:
        plan = Plan((), (), self.bound is None, 0, self.bound)
        runs = 0
        while True:
            trace = self.runner(plan)
            runs += 1
            yield trace
            self._absorb(plan, trace)
            if self.limit is not None and runs >= self.limit:
                return
            plan = self._next()
            if plan is None:
                return

    # -- after a run ----------------------------------------------------------------------
    def _absorb(self, plan: Plan, trace: RunTrace) -> None:
        b = max(plan.branch_point, 0)
        path, nodes = self.path, trace.nodes
        if len(nodes) <= b:  # broke before its branch point: that first step counts as explored
            if b < len(path) and len(plan.prefix) > b:
                path[b].done.setdefault(plan.prefix[b], path[b].node.footprint)
                path[b].pending = _split(path[b].pending, plan.prefix[b])[0]
            del path[b + 1:]
            return
        down: list[list[Step]] = []
        if b < len(path):  # the branch point: the run took one of its pending leaves
            point = path[b]
            chosen = nodes[b].chosen
            point.done[chosen] = nodes[b].footprint
            point.pending, down = _split(point.pending, chosen)
            point.node = nodes[b]
            del path[b + 1:]
        # From there on, the run's own points; those it reached by following a leaf keep
        # the rest of the leaves that went the same way.
        for i in range(len(path), len(nodes)):
            node = nodes[i]
            stay, down = _split(down, node.chosen) if down else ([], [])
            path.append(_Point(node, dict(node.sleep), {node.chosen: node.footprint}, stay))
        self._happens_before(b)
        self._races(b)

    def _happens_before(self, start: int) -> None:
        """Each point's hb bits from `start` on, and its direct predecessors (`after`): the
        steps found before it, latest first, that were not already ordered before it by a
        later one.  Only bits not yet set are visited (mostly the other CPUs' steps)."""
        path = self.path
        for j in range(start, len(path)):
            pj = path[j].node
            hb = 1 << j
            after = []
            open_ = (1 << j) - 1  # the earlier steps not yet known to happen before j
            while open_:
                i = open_.bit_length() - 1
                pi = path[i].node
                if pi.chosen == pj.chosen or pi.footprint.conflicts(pj.footprint):
                    after.append(i)
                    hb |= path[i].hb
                    open_ &= ~hb
                open_ &= ~(1 << i)
            path[j].hb = hb
            path[j].after = after

    def _races(self, start: int) -> None:
        """The races whose second step is at or after start.  A race (i, j): i happens
        right before j, and their CPUs differ.  The steps right before j are among its
        direct predecessors (those that no step ordered before j orders before it): every
        other step before j happens before one of those."""
        path = self.path
        for j in range(max(start, 1), len(path)):
            ej = path[j]
            through = 0  # steps ordered before j through another step: not in a race with j
            for k in ej.after:
                through |= path[k].hb & ~(1 << k)
            for i in reversed(ej.after):  # earliest first
                if through >> i & 1:
                    continue
                ei = path[i]
                if ei.node.chosen == ej.node.chosen:
                    continue
                self.stats.races += 1
                # v: the steps after i and before j that do not happen after i, then j.
                v = [(path[k].node.chosen, path[k].node.footprint) for k in range(i + 1, j)
                     if not path[k].hb >> i & 1]
                v.append((ej.node.chosen, ej.node.footprint))
                if not self._insert(path[i], v) or _on_a_lock(ei.node.footprint, ej.node.footprint):
                    self._reverse_earlier(i, j)
                if self.bound is not None:
                    self._insert_conservative(i, j)

    def _insert_conservative(self, i: int, j: int) -> None:
        """Bounded search (Coons, Musuvathi and McKinley, "Bounded partial-order reduction",
        OOPSLA 2013): reversing the race where it is may cost a preemption the bound has
        not left, where switching before the first CPU's run of steps began costs none.
        So the reversal is also tried from there: from the point c where the CPU of step i
        last began to run, the steps after c and before j that do not happen after c, then j."""
        path = self.path
        cpu = path[i].node.chosen
        c = i
        while c > 0 and path[c - 1].node.chosen == cpu:
            c -= 1
        if c == i:
            return
        v = [(path[k].node.chosen, path[k].node.footprint) for k in range(c + 1, j) if not path[k].hb >> c & 1]
        v.append((path[j].node.chosen, path[j].node.footprint))
        self._insert(path[c], v)

    def _reverse_earlier(self, i: int, j: int) -> None:
        """The race (i, j) cannot be reversed where it is (j's CPU cannot run there), or is
        over a lock (released at i, taken at j: a wakeup sequence from i would find the lock
        held).  As Flanagan and Godefroid do for steps that are not co-enabled (POPL 2005), go back to the latest step before i that conflicts with j, can
        run beside it (j's CPU could run there: the lock's earlier taking) and is not ordered
        before j's CPU's previous step, and reverse the order of those two."""
        path = self.path
        ej = path[j]
        cpu, fp = ej.node.chosen, ej.node.footprint
        prev = next((k for k in range(j - 1, -1, -1) if path[k].node.chosen == cpu), None)
        for k in range(i - 1, -1, -1):
            pk = path[k]
            if pk.node.chosen == cpu or not pk.node.footprint.conflicts(fp):
                continue
            if prev is not None and path[prev].hb >> k & 1:
                return  # ordered before j's CPU got here: nothing earlier can be reversed
            if cpu not in pk.node.enabled:
                continue
            v = [(path[m].node.chosen, path[m].node.footprint) for m in range(k + 1, j) if not path[m].hb >> k & 1]
            if self.bound is not None:  # within a bound: each such taking, from where it is and from its run's start
                self._insert(pk, v + [(cpu, fp)])
                self._insert_conservative(k, j)
            elif self._insert(pk, v + [(cpu, fp)]):
                return

    def _insert(self, point: _Point, v: list[Step]) -> bool:
        """Add wakeup sequence v at point, unless it is covered there; False if it cannot
        start there at all (no step of it can go first)."""
        if v[0][0] not in point.node.enabled:
            # Start v with a step that can be taken here and may go first; if none can, the
            # race cannot be reversed from here (the second step waits for the first: a lock
            # released, then taken).
            first = next((k for k, step in enumerate(v) if step[0] in point.node.enabled
                          and _initial(step, v[:k])), None)
            if first is None:
                self.stats.irreversible += 1
                return False
            v = [v[first]] + v[:first] + v[first + 1:]
        explored = set(point.sleep) | set(point.done)
        if self.bound is not None:
            # Within a bound, source sets only: a CPU to try first, not a sequence to follow
            # (a sequence, or a sleep set, may force a preemption the bound has not left).
            # Nor may another CPU stand for it, as a weak initial would in a search without
            # a bound: the run it starts may need more preemptions for the same order.
            explored |= {leaf[0][0] for leaf in point.pending}
            cpu = v[-1][0] if v[-1][0] in point.node.enabled else v[0][0]
            if cpu in explored:
                self.stats.covered += 1
            else:
                point.pending.append([next(step for step in v if step[0] == cpu)])  # its first step in v
                self.stats.inserted += 1
            return True
        if _weak_initials(v, point.node.enabled, {**point.sleep, **point.done}) & explored:
            self.stats.covered += 1
            return True
        leaf = _place(point.pending, v) if point.pending else v
        if leaf is None:
            self.stats.covered += 1
            return True
        point.pending.append(leaf)
        self.stats.inserted += 1
        return True

    def _within_bound(self, i: int, cpu: int) -> bool:
        """Can cpu run at point i of the path without going beyond the bound?"""
        if i == 0:
            return True
        prev = self.path[i - 1].node
        return prev.preemptions + _preempts(prev.chosen, self.path[i].node, cpu) <= self.bound

    # -- the next run ----------------------------------------------------------------------
    def _next(self) -> Plan | None:
        path = self.path
        for i in range(len(path) - 1, -1, -1):
            point = path[i]
            if self.bound is not None:  # a first step beyond the bound is not run at all
                point.pending = [leaf for leaf in point.pending if self._within_bound(i, leaf[0][0])]
            if point.pending:
                leaf = point.pending[0]
                sleep = {**point.sleep, **point.done}
                del path[i + 1:]
                prefix = tuple(p.node.chosen for p in path[:i]) + tuple(c for c, _ in leaf)
                if self.bound is not None:  # no sleep sets within a bound (see _insert)
                    return Plan(prefix, (), False, i, self.bound)
                return Plan(prefix, tuple(sorted(sleep.items())), True, i)
        return None
