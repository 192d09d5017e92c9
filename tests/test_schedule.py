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


@pytest.mark.parametrize("label,near", [
    ("ftrace_arch_code_modify_prepar", "ftrace_arch_code_modify_prepare"),
    ("nolabel", None),
    ("lock:ftrace_lok", "lock:ftrace_lock"),
])
def test_a_label_no_path_yields_is_refused_naming_the_nearest(label, near):
    from emu.schedule import check_label

    with pytest.raises(ScheduleError, match=f"no kernel path yields a point '{label}'") as info:
        Schedule.parse(f"1@ftrace_module_init 0@{label} 1", check=check_label)
    if near:
        assert near in str(info.value)


def test_every_label_a_run_meets_is_in_the_vocabulary(monkeypatch):
    """POINT_LABELS stays in step with the code: every built-in scenario, every variant, both
    ways of patching, a point per record."""
    import emu.schedule as schedule_mod
    from ftrace_core.kernels import VARIANTS
    from ftrace_core.scenario import load_scenario, run_scenario

    met: set[str] = set()
    real = schedule_mod.label_of

    def spy(value):
        label = real(value)
        if label is not None:
            met.add(label)
        return label

    monkeypatch.setattr(schedule_mod, "label_of", spy)
    for name in ("race", "disabled-shutdown", "patch-while-running"):
        for variant in VARIANTS:
            for patching in ("breakpoints", "naive"):
                run_scenario(load_scenario(name), variant, "rr", patching=patching)
    for label in met:
        schedule_mod.check_label(label)  # raises for one missing from the vocabulary
    assert {"ftrace_module_enable", "bp_finish", "text_byte", "prepare_coming_module"} <= met


def test_a_schedule_the_run_cannot_follow_is_reported_and_fails_the_run():
    from ftrace_core.scenario import load_scenario, run_scenario

    r = run_scenario(load_scenario("race"), "seed", "1@ftrace_module_init#999 0 1")
    assert r.unfollowed == ["1@ftrace_module_init#999: CPU 1 finished after reaching ftrace_module_init 1 time"]
    assert not r.ok and r.to_json()["schedule_followed"] is False
    printed = run_scenario(load_scenario("race"), "seed", r.schedule)
    assert printed.unfollowed == [] and printed.schedule == r.schedule  # what ran replays, followed
