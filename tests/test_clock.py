"""Each CPU's clock counts the guest instructions it runs (emu.clock): timestamps and
function_graph durations measure work, and the same run prints the same trace."""

from __future__ import annotations

import re

import pytest
from unicorn import unicorn_const as uc_const

from emu.clock import NS_PER_INSN
from emu.sched import run_to_completion
from ftrace_core.system import boot
from ftrace_core.tracer import TRACE_EVENT_NS


@pytest.fixture(scope="module")
def system():
    return boot("fixed")


def _count_instructions(s):
    """An oracle no one optimised: a Python hook on every instruction, skipping the code
    the clock leaves uncounted (the in-guest recorder's)."""
    seen = [0]
    uncounted = s.kernel.machine.clock.uncounted

    def on_insn(uc, address, size, data):
        if not any(lo <= address < hi for lo, hi in uncounted):
            seen[0] += 1

    return seen, s.kernel.machine.hooks.add(uc_const.UC_HOOK_CODE, on_insn)


def test_the_clock_is_the_instruction_count_of_an_untraced_call(system):
    seen, handle = _count_instructions(system)
    try:
        before = system.cpus[0].clock_ns
        system.call("workload_run", 2)
        spent = system.cpus[0].clock_ns - before
    finally:
        system.kernel.machine.hooks.remove(handle)
    assert seen[0] > 1000
    assert spent == seen[0] * NS_PER_INSN


def test_a_call_cut_into_quanta_counts_each_instruction_once(system):
    """A quantum stops the CPU inside a translated block; the part counted but not run is
    given back (emu/native/icount.c: icount_settle), so slices add up to the whole."""
    cpu = system.cpus[1]
    addr = system.kernel.symbol("workload_run")
    seen, handle = _count_instructions(system)
    try:
        before = cpu.clock_ns
        run_to_completion(cpu.call(addr, 2, quantum=37))
        spent = cpu.clock_ns - before
    finally:
        system.kernel.machine.hooks.remove(handle)
    assert spent == seen[0] * NS_PER_INSN


def test_only_the_running_cpu_clock_moves(system):
    other = system.cpus[1].clock_ns
    system.call("workload_run", 1, cpu=0)
    assert system.cpus[1].clock_ns == other


def _graph_durations(s, n_small: int, n_large: int) -> list[float]:
    s.tracefs.write("set_ftrace_filter", "bench_calls")
    s.tracefs.write("current_tracer", "function_graph")
    s.call("bench_calls", n_small)
    s.call("bench_calls", n_large)
    text = s.tracefs.read("trace")
    return [float(m) for m in re.findall(r"([0-9.]+) us\s+\|\s+bench_calls\(\);", text)]


def test_function_graph_durations_grow_with_the_work_done():
    s = boot("fixed")
    small, large = _graph_durations(s, 1000, 2000)
    assert large > 1.9 * small  # twice the loop, twice the time (less the fixed cost)
    assert small * 1000 > 1000 * 3 * NS_PER_INSN  # at least 3 instructions an iteration


def test_printk_timestamps_advance_with_the_work_between_them():
    s = boot("fixed")
    s.call("workload_run", 50)
    stamps = [float(m) for m in re.findall(r"^\[\s*([0-9.]+)\]", s.dmesg(), re.M)]
    assert stamps == sorted(stamps)
    assert stamps[-1] > stamps[0]


def test_both_recorders_give_the_same_timestamps():
    traces = []
    for recorder in ("hook", "guest"):
        s = boot("fixed", recorder=recorder)
        s.tracefs.write("current_tracer", "function")
        s.call("workload_run", 3)
        traces.append(s.tracefs.read("trace"))
    assert traces[0] == traces[1]
    assert len(set(re.findall(r" ([0-9]+\.[0-9]{6}):", traces[0]))) > 10  # time moves


def test_each_event_charges_the_recorder_cost_once():
    """Two traced calls of a function doing nothing apart differ by its instructions plus
    one event each: the recorder's constant, not its instructions."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "bench_leaf")
    s.tracefs.write("current_tracer", "function")
    before = s.cpus[0].clock_ns
    s.call("bench_leaf", 1)
    traced = s.cpus[0].clock_ns - before
    s.tracefs.write("current_tracer", "nop")
    before = s.cpus[0].clock_ns
    s.call("bench_leaf", 1)
    untraced = s.cpus[0].clock_ns - before
    # the trampoline's instructions plus one event's charge
    assert TRACE_EVENT_NS < traced - untraced < TRACE_EVENT_NS + 100 * NS_PER_INSN


@pytest.mark.parametrize("recorder", ["hook", "guest"])
@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_pausing_a_call_for_progress_changes_nothing(monkeypatch, recorder, tracer):
    """A call paused every few hundred instructions (as for a progress display) prints the
    trace of the call run in one go: each pause resumes exactly where it stopped, every hook
    running once (emu/native/icount.c: icount_start)."""
    import emu.cpu

    def traced(pause: int | None) -> tuple[str, list[int]]:
        if pause:
            monkeypatch.setattr(emu.cpu, "PROGRESS_INSNS", pause)
        s = boot("fixed", recorder=recorder)
        s.tracefs.write("current_tracer", tracer)
        reports: list[int] = []
        s.call("workload_run", 2, progress=reports.append if pause else None)
        return s.tracefs.read("trace") + s.dmesg(), reports

    whole, _ = traced(None)
    paused, reports = traced(331)
    assert len(reports) > 20 and reports == sorted(reports)
    assert paused == whole


def test_the_budget_is_counted_in_instructions_whatever_the_pauses():
    s = boot("fixed")
    from emu.errors import GuestFault

    before = s.cpus[0].clock_ns
    with pytest.raises(GuestFault, match="did not return within 5000 instructions"):
        s.call("workload_run", 100, budget=5000)
    assert 5000 <= s.cpus[0].clock_ns - before < 5000 + 64  # stopped at the block that crossed it
