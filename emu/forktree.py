"""A runner for emu.explore that shares the prefixes of schedules: a chain of paused forked
processes (checkpoints), each holding a run stopped at one of its scheduling points, from
which later schedules resume instead of starting again from the initial state.

Why: depth-first search branches late, so a schedule re-runs most of the steps of the one
before it.  A checkpoint is a fork() of the run in progress: the parent pauses and waits for
orders, the child goes on.  Forking and the copy-on-write faults that follow cost a few
milliseconds, so a checkpoint is left only once the steps since the last one (or since the
run resumed) cost at least `threshold_s` of CPU time (this process's: wall time would count
the other work of a shared machine), and only at a point where the search could choose
another CPU; a checkpoint at every point costs more than it saves.

Why a chain, not a tree: when the search hands over a plan, every later plan extends a
prefix of it (depth-first order), so a checkpoint whose choices are not a prefix of the
current plan will never be used again and is dropped at once.  The live checkpoints are
thus always nested: each one's choices extend the one before.

Processes and channels.  The explorer (this process) forks the runs that start from the
initial state itself, over a socketpair.  Every other process reaches it through a
listening Unix socket (an abstract address): a checkpoint keeps the connection its run had
and receives plans on it; the run it forks for a plan connects anew and reports on that
connection (a "checkpoint" message when it leaves one behind and switches to a connection
of its own, then its result).  Only one run is ever in flight, so at most one connection
waits to be accepted.  Closing a checkpoint's connection tells it to exit; it first waits
for its own children, so when the explorer has waited for its direct children, no process
of the tree is left (nor a zombie), whether the search finished, raised, or was
interrupted.  If the explorer dies outright, every checkpoint sees its connection close.
Forked processes block SIGINT (the explorer, which gets Ctrl-C, tears the tree down) and
leave only through os._exit.

A tree may have an answerer: something in the explorer that a run can ask questions of as it
finishes (a cache of what earlier runs found, say: their processes are gone, and a
checkpoint forked before they ended never saw it).  A question is an "ask" message on the
run's connection, answered at once with an "answer"; the answerer then sees the run's report
before the search does.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .explore import Plan, RunTrace
from .wire import receive, send

#: CPU time of steps between checkpoints, by default.  On the race scenario a fork and its
#: copy-on-write faults cost 2-5 ms, and a schedule's costly steps 3-12 ms each; a sweep
#: (BENCHMARKS.md) found 3-10 ms about equally good, 2 ms or 14 ms and more worse.
DEFAULT_THRESHOLD_S = 0.006


class Resumable(Protocol):
    """A run of one schedule in progress, in this process."""

    def step(self) -> bool:
        """Take the next scheduling step; False (having run nothing) once the run is over."""

    @property
    def choices(self) -> tuple[int, ...]:
        """The CPU chosen at each step so far."""

    @property
    def branching(self) -> bool:
        """Could a search choose differently at the next step (more than one CPU can run,
        and is not asleep)?  Only there is a checkpoint worth its fork: one taken where a
        single CPU can run is better taken at the next point where more can, and not at all
        if there is none (the tail of a run where the other CPU is done)."""

    def redirect(self, plan: Plan) -> None:
        """Go on under plan, whose prefix extends the choices so far by at least one."""

    def trace(self, ask: Callable[[object], object] | None = None) -> RunTrace:
        """The finished run's path and outcome.  ask(question) returns the tree's
        answerer's answer; a tree without an answerer calls trace() without it."""


class Answerer(Protocol):
    """The explorer's side of the questions runs ask."""

    def answer(self, question: object) -> object:
        """The reply to a run's question (something picklable)."""

    def reported(self, trace: RunTrace) -> None:
        """A run's report reached the explorer (or the broken one made for a run that died):
        whatever the run asked about has been settled."""


@dataclass
class _Checkpoint:
    choices: tuple[int, ...]
    conn: socket.socket
    pid: int
    direct: bool  # a child of the explorer, which must reap it


@dataclass
class ForkTreeStats:
    runs: int = 0
    from_start: int = 0  # runs forked from the initial state
    resumed_steps: int = 0  # steps skipped by resuming from a checkpoint
    checkpoints: int = 0


@dataclass
class ForkTree:
    """Runner(plan) -> RunTrace for emu.explore.explore(); `start(plan)` makes a Resumable
    run in a freshly forked child of this process (whose state is the initial one).  Use as a
    context manager, or call close(): it ends every process of the tree."""

    start: Callable[[Plan], Resumable]
    #: What a run that broke (raised, or died without a report) gives: RunTrace([], outcome)
    #: with an outcome saying why, in the caller's terms.
    broken: Callable[[str], RunTrace]
    threshold_s: float = DEFAULT_THRESHOLD_S
    answerer: Answerer | None = None
    stats: ForkTreeStats = field(default_factory=ForkTreeStats)
    _chain: list[_Checkpoint] = field(default_factory=list, repr=False)
    _listener: socket.socket | None = field(default=None, repr=False)
    _address: str = field(default="", repr=False)
    #: The run in flight: its connection, and its pid if it is this process's child.
    _inflight: tuple[socket.socket, int | None] | None = field(default=None, repr=False)

    def __enter__(self) -> "ForkTree":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- in the explorer ----------------------------------------------------------------------
    def __call__(self, plan: Plan) -> RunTrace:
        if self._listener is None:
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind("")  # Linux autobind: a fresh abstract address
            self._listener.listen(8)
            self._address = self._listener.getsockname()
        prefix = plan.prefix
        # Resume from the deepest checkpoint not past the plan's branch point (where its sleep
        # set begins: its last choice, or a wakeup sequence's first);
        # everything not on the plan's prefix, or past that checkpoint, is dropped.
        keep = 0
        for i, cp in enumerate(self._chain):
            if len(cp.choices) <= plan.branch_point and prefix[:len(cp.choices)] == cp.choices:
                keep = i + 1
        self._drop(keep)
        self.stats.runs += 1
        if self._chain:
            base = self._chain[-1]
            self.stats.resumed_steps += len(base.choices)
            send(base.conn, plan)
            self._inflight = (self._accept(base), None)
        else:
            self.stats.from_start += 1
            conn, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                conn.close()
                self._forked()
                self._work(theirs, lambda: self.start(plan))
            theirs.close()
            self._inflight = (conn, pid)
        while True:
            conn, direct = self._inflight
            msg = receive(conn)
            if msg is not None and msg[0] == "ask":
                reply = self.answerer.answer(msg[1])
                try:
                    send(conn, ("answer", reply))
                except OSError:
                    pass  # it died asking: the next read finds the end of its stream
                continue
            if msg is None or msg[0] == "result":
                self._end_inflight()
                trace = self.broken("a run died without a report") if msg is None else msg[1]
                if self.answerer is not None:
                    self.answerer.reported(trace)
                return trace
            _, choices, pid = msg  # it left a checkpoint, and goes on over a new connection
            self._chain.append(_Checkpoint(choices, conn, pid, pid == direct))
            self.stats.checkpoints += 1
            # What goes on is the checkpoint's child, not this process's.
            self._inflight = (self._accept(self._chain[-1]), None)

    def close(self) -> None:
        """End every process of the tree (each checkpoint waits for its children first).
        Safe to call again if interrupted."""
        if self._listener is not None:
            # First, so that a run still going finds no one to talk to (a connection left
            # waiting to be accepted is reset) instead of waiting for the explorer to read.
            self._listener.close()
            self._listener = None
        self._end_inflight()
        self._drop(0)

    def _end_inflight(self) -> None:
        """Let go of the run in flight (finished, or abandoned on an exception: closing its
        connection makes its report fail, and it exits)."""
        if self._inflight is not None:
            conn, direct = self._inflight
            conn.close()
            if direct:
                _wait(direct)
            self._inflight = None

    def _drop(self, keep: int) -> None:
        while len(self._chain) > keep:
            cp = self._chain[-1]  # the deepest first: its parent waits for it
            cp.conn.close()
            if cp.direct:
                _wait(cp.pid)
            self._chain.pop()

    def _accept(self, parent: _Checkpoint) -> socket.socket:
        """The connection of the run that `parent` just forked (or that went on from it)."""
        while True:
            ready, _, _ = select.select([self._listener, parent.conn], [], [])
            if self._listener in ready:
                return self._listener.accept()[0]
            # A checkpoint only ever writes before it pauses: readable now means it died.
            raise RuntimeError(f"checkpoint process {parent.pid} died")

    def _forked(self) -> None:
        """In a new child of the explorer: let go of the explorer's ends of the tree."""
        for cp in self._chain:
            cp.conn.close()
        self._chain = []
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    # -- in the forked processes --------------------------------------------------------------
    def _work(self, conn: socket.socket, make: Callable[[], Resumable]) -> None:
        """Drive a run to its end, leaving checkpoints behind; report on conn; exit."""
        # What this process inherited is never garbage here: out of the collector's sight,
        # a full collection does not walk (and copy on write) every object of the booted
        # system, ~25 ms in a run of 500 steps.  (Moving the lists is all gc.freeze() does.)
        gc.freeze()
        try:
            try:
                run = make()
                last = time.process_time()
                while run.step():
                    if run.branching and time.process_time() - last >= self.threshold_s:
                        conn = self._checkpoint(conn, run)
                        last = time.process_time()
                if self.answerer is None:
                    result = run.trace()
                else:
                    result = run.trace(lambda question, conn=conn: _ask(conn, question))
            except Exception as exc:  # a broken run is reported, not raised in the child
                result = self.broken(f"{type(exc).__name__}: {exc}")
            send(conn, ("result", result))
        finally:
            os._exit(0)

    def _checkpoint(self, conn: socket.socket, run: Resumable) -> socket.socket:
        """Fork: the child goes on with the run over a new connection (returned there); this
        process stays here as a checkpoint, serving plans on conn until it is dropped."""
        new = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        new.connect(self._address)  # before the message: the explorer accepts right after it
        send(conn, ("checkpoint", run.choices, os.getpid()))
        if os.fork() == 0:
            conn.close()
            return new
        new.close()
        self._serve(conn, run)
        raise AssertionError("unreachable")  # _serve exits the process

    def _serve(self, conn: socket.socket, run: Resumable) -> None:
        """A checkpoint: for each plan received, fork a run that resumes from here."""
        try:
            while True:
                plan = receive(conn)
                _reap(block=False)
                if plan is None:
                    break
                new = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                new.connect(self._address)
                if os.fork() == 0:
                    conn.close()

                    def resumed(run: Resumable = run, plan: Plan = plan) -> Resumable:
                        run.redirect(plan)
                        return run
                    self._work(new, resumed)
                new.close()
        finally:
            _reap(block=True)
            os._exit(0)


def _ask(conn: socket.socket, question: object) -> object:
    """In a run: the explorer's answer to question (one round trip on the run's connection)."""
    send(conn, ("ask", question))
    reply = receive(conn)
    if reply is None:
        raise ConnectionError("the explorer stopped answering")
    return reply[1]


def _wait(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # already reaped (a second close() after an interruption)
        pass


def _reap(block: bool) -> None:
    """Collect this process's finished children (all of them, waiting, if block)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
