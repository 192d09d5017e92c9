"""Exploring one variant's schedules with several searches at once: worker processes forked
from the explorer (`--jobs`), or the workers of Ray actors (.cluster), each with a runner of
its own (a ForkTree, typically), the runs put back in the order one search makes them.

What a worker is given is a subtree: the whole tree at first, then emu.explore Branches (the
untried alternatives at a node, with everything below them).  A worker explores its subtree
depth first as one search would, except that when a worker has nothing to do and no subtree
is waiting, the coordinator asks the busy ones for work, and each hands over the
alternatives at the shallowest node of its path that has some (the largest subtree it has
left), keeping at least one such node for itself.  So a worker keeps the deep end of its
subtree, where consecutive runs share the longest prefixes, and the big pieces move.  (On
the race's verdict for legacy, 841 runs, two workers take about 11 subtrees in all and are
idle for under 0.2 s.)  Workers that answer only after a while (Ray's) are asked ahead, so
that a subtree is waiting when one of them runs out.

Why the results are those of one process: a subtree's runs depend only on its Branch (sleep
sets learn nothing from other subtrees), and every run carries its place in the sequential
order (emu.explore.Visit.order).  The coordinator hands on a run only once no worker can
still find one before it: a worker's runs, and the Branches it gives away, come after the
last run it reported (or after its Branch, before its first), so a run is final once it comes
before all of those and before every Branch waiting.  The report is then built from the runs
in the order one search makes them, whatever order they were found in; a `limit` stops at
the same run as one search would.
"""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
import select
import signal
import socket
from dataclasses import dataclass
from typing import Callable, Iterator, NoReturn, Protocol

from emu.explore import Branch, RunTrace, Runner, Search, Visit
from emu.wire import receive, send

__all__ = ["ForkedWorkers", "SubtreeWorker", "Workers", "merged"]


class SubtreeWorker:
    """A worker's side: explores the subtrees it is given, one at a time, with its runner."""

    def __init__(self, runner: Runner, max_preemptions: int | None, reduce: bool):
        self.runner, self.max_preemptions, self.reduce = runner, max_preemptions, reduce
        self._search: Search | None = None
        self._visits: Iterator[Visit] | None = None

    @property
    def busy(self) -> bool:
        return self._search is not None

    def start(self, root: Branch | None) -> None:
        """Explore the subtree of root (None: the whole tree)."""
        self._search = Search(self.runner, self.max_preemptions, self.reduce, root)
        self._visits = self._search.visits()

    def step(self) -> Visit | None:
        """Make the next run of the subtree; None (and idle) once there is none."""
        visit = next(self._visits, None) if self._visits is not None else None
        if visit is None:
            self._search = self._visits = None
            return None
        return _slim(visit)

    def give(self, most: int) -> list[Branch]:
        """Hand over up to `most` of the subtrees left, the largest first, keeping one."""
        return [] if self._search is None else self._search.give_away(most, keep=1)


def _slim(visit: Visit) -> Visit:
    """The run as the report needs it: the path is left out but for its last node (whose
    preemptions a failing schedule is reported with); a path is most of a run's bytes."""
    t = visit.trace
    return Visit(RunTrace(t.nodes[-1:], t.outcome, t.schedule, t.pruned), visit.order, visit.broke)


class Workers(Protocol):
    """Searches in other processes, as the coordinator (merged) drives them."""

    count: int
    #: Subtrees to keep waiting while none is idle: workers that answer a request for work
    #: only after a while (a Ray actor, at the end of its call) would otherwise wait that long.
    reserve: int

    def assign(self, worker: int, root: Branch | None) -> None:
        """Have an idle worker explore root's subtree (None: the whole tree)."""

    def ask(self, worker: int, most: int) -> None:
        """Ask a busy worker to give away up to `most` subtrees: a "gave" event answers."""

    def events(self) -> list[tuple[int, str, object]]:
        """Wait for what workers report, in the order each reported it: (worker, "visit",
        Visit), (worker, "gave", [Branch]), (worker, "done", None) when a subtree is done."""


@dataclass
class _Busy:
    order: tuple[int, ...]  # its Branch's (before its first run)
    last: tuple[int, ...] | None = None  # the order of the last run it reported
    asked: bool = False  # for work, with no answer yet
    fresh: bool = True  # it may have work to give (it ran since it last had none)

    def before(self, order: tuple[int, ...]) -> bool:
        """Is a run of this order before every run and Branch still to come from here?"""
        return order <= self.last if self.last is not None else order < self.order


def merged(workers: Workers, limit: int | None = None) -> Iterator[Visit]:
    """The runs of the whole tree, explored by the workers, in the order of one search (and,
    with limit, as many as one search would make).  The caller closes the workers."""
    waiting: list = [((), 0, None)]  # heap of (order, tie-breaker, Branch or None: the whole tree)
    tie = itertools.count(1)
    busy: dict[int, _Busy] = {}
    found: list = []  # heap of (order, Visit)
    made = 0
    while True:
        for worker in range(workers.count):
            if worker not in busy and waiting:
                order, _, root = heapq.heappop(waiting)
                workers.assign(worker, root)
                busy[worker] = _Busy(order)
        # Subtrees wanted: one per idle worker, and the reserve of those slow to answer.
        wanted = workers.count - len(busy) + workers.reserve - len(waiting)
        if wanted > 0 and busy:
            # Split what the busy ones have left (each is asked once per run it reports).
            most = -(-wanted // len(busy))
            for worker, state in busy.items():
                if not state.asked and state.fresh:
                    workers.ask(worker, most)
                    state.asked = True
        if busy:
            for worker, kind, body in workers.events():
                state = busy.get(worker)
                if kind == "visit":
                    heapq.heappush(found, (body.order, body))
                    if state is not None:
                        state.last, state.fresh = body.order, True
                elif kind == "gave":
                    for branch in body:
                        heapq.heappush(waiting, (branch.order, next(tie), branch))
                    if state is not None:
                        state.asked = False
                        state.fresh = bool(body)
                elif kind == "done":
                    busy.pop(worker, None)
        while found:
            order = found[0][0]
            if (waiting and order >= waiting[0][0]) or not all(s.before(order) for s in busy.values()):
                break
            visit = heapq.heappop(found)[1]
            yield visit
            made += 1
            # As in emu.explore.explore: a run that broke before its branch point never ended it.
            if limit is not None and made >= limit and not visit.broke:
                return
        if not busy and not waiting:
            return


# -- forked workers ---------------------------------------------------------------------------

class ForkedWorkers:
    """Worker processes forked from this one (whose state, the booted kernel, they share),
    each talking to it over a socketpair.  make(in_child) builds a worker's runner in the
    worker, with in_child to be called in every process the runner forks (they must not keep
    the worker's end of its channel: checkpoints outlive runs).  Closing ends every worker
    process and everything they forked; use as a context manager."""

    def __init__(self, jobs: int, make: Callable[[Callable[[], None]], tuple[Runner, Callable[[], None]]],
                 max_preemptions: int | None, reduce: bool):
        self.count = jobs
        self.reserve = 0  # a worker answers between two runs: asking when one is idle is soon enough
        self.stats: dict[int, object] = {}  # per worker, what its runner counted (sent when idle)
        self._conns: list[socket.socket] = []
        self._pids: list[int] = []
        try:
            for _ in range(jobs):
                mine, theirs = socket.socketpair()
                pid = os.fork()
                if pid == 0:
                    for conn in self._conns:  # the other workers' channels are not this one's
                        conn.close()
                    mine.close()
                    serve(theirs, make, max_preemptions, reduce)
                theirs.close()
                self._conns.append(mine)
                self._pids.append(pid)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "ForkedWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def assign(self, worker: int, root: Branch | None) -> None:
        send(self._conns[worker], ("start", root))

    def ask(self, worker: int, most: int) -> None:
        send(self._conns[worker], ("give", most))

    def events(self) -> list[tuple[int, str, object]]:
        ready, _, _ = select.select(self._conns, [], [])
        out = []
        for conn in ready:
            worker = self._conns.index(conn)
            msg = receive(conn)
            if msg is None:
                raise RuntimeError(f"exploring worker {self._pids[worker]} died")
            kind, body = msg
            if kind == "error":
                raise body
            if kind == "done":
                self.stats[worker] = body
                body = None
            out.append((worker, kind, body))
        return out

    def close(self) -> None:
        """Closing a worker's channel tells it to stop (between two runs): it closes its
        runner, which ends the processes it forked, and exits.  Safe to call again."""
        for conn in self._conns:
            conn.close()
        for pid in self._pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # already reaped (a second close() after an interruption)
                pass
        self._conns, self._pids = [], []


def serve(conn: socket.socket, make, max_preemptions: int | None, reduce: bool) -> NoReturn:
    """A worker process: runs the subtrees it is sent, between two runs answering requests
    for work, until its channel closes; reports every run as it is made; exits."""
    # Ctrl-C reaches the whole process group: the explorer ends the workers, which end their trees.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        runner, close = make(conn.close)
        try:
            worker = SubtreeWorker(runner, max_preemptions, reduce)
            while True:
                if worker.busy and not select.select([conn], [], [], 0)[0]:
                    visit = worker.step()
                    send(conn, ("visit", visit) if visit is not None else ("done", getattr(runner, "stats", None)))
                    continue
                msg = receive(conn)
                if msg is None:
                    break  # the explorer is done with us (or gone)
                kind, body = msg
                if kind == "start":
                    worker.start(body)
                else:
                    send(conn, ("gave", worker.give(body)))
        finally:
            close()
    except BaseException as exc:  # the explorer raises it
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        try:
            send(conn, ("error", exc))
        except OSError:
            pass
    finally:
        os._exit(0)
