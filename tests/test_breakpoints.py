"""x86 runtime patching with breakpoints, and the torn-instruction race it prevents."""

from __future__ import annotations

import pytest

from emu.errors import GuestFault
from ftrace_core.arch_x86 import NOP5, call_target
from ftrace_core.explore import explore_variant, map_forked
from ftrace_core.ops import FtraceOps
from ftrace_core.scenario import load_scenario, parse_scenario, run_scenario
from ftrace_core.system import boot
from ftrace_core.testing import FAKE_BASE, fake_ftrace
from emu.sched import run_to_completion

PATCH = load_scenario("patch-while-running")


@pytest.fixture(scope="module")
def explored():
    """patch-while-running at fine granularity within one preemption, both ways of patching."""
    return dict(zip(("naive", "breakpoints"), map_forked(
        lambda p: explore_variant(PATCH, "fixed", max_preemptions=1, reduce=False, granularity="fine",
                                  quantum=PATCH.quantum, patching=p), ["naive", "breakpoints"], 2)))


def test_naive_rewriting_lets_the_other_cpu_run_torn_instructions(explored):
    naive = explored["naive"]
    assert naive.failing_schedules
    assert all(kind.startswith("no_oops: ") for kind in naive.kinds)
    shortest = naive.shortest_failing
    assert "text_byte#1" in shortest  # one byte of a call site written, then the other CPU runs it
    r = run_scenario(PATCH, "fixed", shortest, patching="naive")
    assert not r.invariants["no_oops"]


def test_with_breakpoints_no_schedule_runs_a_torn_instruction(explored):
    bp, naive = explored["breakpoints"], explored["naive"]
    assert bp.failing_schedules == [] and bp.schedules > 20
    # and the schedules that broke naive patching are clean with the protocol
    for schedule in naive.failing_schedules:
        r = run_scenario(PATCH, "fixed", schedule.replace("text_byte", "bp_write"))
        assert all(r.invariants.values()), (schedule, r.violations)


def test_int3_hits_show_in_the_trace_and_the_timeline():
    scn = parse_scenario("task 1 worker 3000\n"
                         "cpu 0: echo 'bench_leaf bench_mid' > set_ftrace_filter\n"
                         "cpu 0: echo function > current_tracer\n"
                         "cpu 1: call bench_calls 40\n"
                         "schedule: q=20 rr\n", "int3.scn")
    r = run_scenario(scn, "fixed")
    assert all(r.invariants.values()), r.violations
    hits = [t for c, t in r.timeline.lines() if c == 1 and t.startswith("hits int3 at ")]
    assert hits and all(t.endswith(": ftrace_int3_handler skips as a nop") for t in hits)
    # the trace holds only what the kernel's ring buffer would: function events
    assert "worker-3000  [001] " in r.trace and "int3" not in r.trace
    assert r.commands[-1].output == str(boot().call("bench_calls", 40))  # the result is unharmed


def test_a_failed_breakpoint_pass_is_reported_and_every_breakpoint_removed():
    ftrace, text, env, sites = fake_ftrace(8, patching="breakpoints")
    text.readonly_ranges.append((sites[5], sites[5] + 16))
    run_to_completion(ftrace.register_ftrace_function(FtraceOps("function", FAKE_BASE + 0x200)))
    assert env.lines[1] == "Failed on adding breakpoints (5):\n"
    assert env.lines[2].startswith(f"ftrace faulted on writing [<{sites[5]:016x}>]")
    assert all(text.read(ip, 5) == NOP5 for ip in sites)  # the int3s of sites 0-4 are gone again
    assert ftrace.ftrace_disabled


def test_the_passes_leave_calls_and_the_handler_is_quiet_outside_updates():
    ftrace, text, env, sites = fake_ftrace(8, patching="breakpoints")
    run_to_completion(ftrace.register_ftrace_function(FtraceOps("function", FAKE_BASE + 0x200)))
    assert all(call_target(ip, text.read(ip, 5)) == ftrace.arch.addrs.ftrace_caller for ip in sites)
    from ftrace_core.breakpoints import ftrace_int3_handler

    assert ftrace_int3_handler(ftrace, sites[0] + 1) is None  # not modifying code: a real int3


def test_an_int3_that_is_not_ftraces_is_an_oops():
    s = boot()
    s.kernel.set_kernel_text_rw()
    site = s.symbol("bench_leaf")
    s.kernel.text.write(s.kernel.cpus[0], [(site, b"\xcc")])
    s.kernel.set_kernel_text_ro()
    with pytest.raises(GuestFault) as info:
        s.call("bench_leaf", 1)
    assert info.value.report.startswith("int3: 0000 [#1] SMP")
    assert "] bench_leaf+0x1/" in info.value.report.split("RIP: 0010:", 1)[1].splitlines()[0]


BUG_SCHEDULE = "0@lock:ftrace_lock#1 1@lock:module_mutex#2 0@run_sync#2 1@do_init_module#1 0 1"


def test_race_mod_made_read_only_between_passes_ends_in_bug_on_old_kernels():
    """The explorer's finding at record granularity: the last pass faults, the int3s cannot
    be removed (BUG()), and CPU 1's init runs into one that is no longer ftrace's."""
    race = load_scenario("race")
    r = run_scenario(race, "legacy", BUG_SCHEDULE)
    assert r.bug.splitlines()[0] == "Failed on removing breakpoints (164):"
    errors = [c.error for c in r.commands]
    assert errors[0] == "kernel BUG at arch/x86/kernel/ftrace.c:ftrace_replace_code!"
    assert errors[1].startswith("insmod: race_mod: init_module oopsed: int3: 0000 [#1] SMP")
    assert not r.invariants["no_oops"]
    fixed = run_scenario(race, "fixed", BUG_SCHEDULE)
    assert all(fixed.invariants.values()), fixed.violations
