"""The two-CPU scheduler on plain generator tasks: segments, points, locks, replay."""

from __future__ import annotations

import pytest

from emu.sched import Deadlock, Lock, Point
from emu.schedule import Schedule, ScheduleError, Scheduler


def _task(name, log, points, lock=None):
    def gen():
        for p in points:
            if p == "LOCK":
                yield from lock.acquire()
                log.append(f"{name}:locked")
            elif p == "UNLOCK":
                lock.release()
                log.append(f"{name}:unlocked")
            else:
                log.append(f"{name}:{p}")
                yield Point(p)
    return gen()


def _run(schedule, lock=None, a=("a1", "a2", "a3"), b=("b1", "b2")):
    log = []
    sched = Scheduler({0: _task("A", log, a, lock), 1: _task("B", log, b, lock)})
    ran = sched.run(Schedule.parse(schedule))
    return log, ran


def test_named_points_decide_the_interleaving():
    log, ran = _run("0@a2 1@b1 0 1")
    assert log == ["A:a1", "A:a2", "B:b1", "A:a3", "B:b2"]
    assert ran == "0@a2#1 1@b1#1 0 1"


def test_default_is_round_robin_and_prints_replayably():
    log, ran = _run("rr")
    assert log == ["A:a1", "B:b1", "A:a2", "B:b2", "A:a3"]
    assert _run(ran)[0] == log


def test_step_counts_and_leftover_runs_round_robin():
    log, ran = _run("1:1")
    assert log[0] == "B:b1"
    assert _run(ran)[0] == log


def test_a_task_waiting_for_a_lock_is_not_runnable():
    lock = Lock("ftrace_lock")
    a = ("LOCK", "a1", "a2", "UNLOCK", "a3")
    b = ("b1", "LOCK", "b2", "UNLOCK")
    log, ran = _run("0@a1 1 0 1", lock, a, b)
    # B tries the lock while A holds it: it waits, A finishes its section, then B goes on.
    assert log.index("A:unlocked") < log.index("B:locked")
    assert _run(ran, Lock("ftrace_lock"), a, b)[0] == log


def test_deadlock_is_reported():
    lock = Lock("module_mutex")
    with pytest.raises(Deadlock, match="CPU 1 on module_mutex"):
        _run("0@a1 1", lock, ("LOCK", "a1", "a2"), ("LOCK", "b1"))


@pytest.mark.parametrize("text,message", [
    ("2", "no CPU 2"), ("0@", "cannot parse"), ("x", "cannot parse"), ("0:0", "counts start at 1"),
    ("0 q=5", "q=N must come first"),
])
def test_bad_schedules_are_named(text, message):
    with pytest.raises(ScheduleError, match=message):
        Schedule.parse(text)


def test_quantum_prefix_round_trips():
    sched = Schedule.parse("q=500 0@x#2 1")
    assert sched.quantum == 500 and str(sched) == "q=500 0@x#2 1"
