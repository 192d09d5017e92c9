"""What a step touches (emu.footprint): guest code by the pages it reads, writes and
executes (the TLB's misses, emu.machine), the host state it sees through hooks as watched
tokens (ftrace_core.explore.footprints); and the relation this gives against the coarse one
("guest code touches everything"), which stays as the oracle."""

from __future__ import annotations

import pytest

from emu.footprint import Tracker
from ftrace_core.explore import explore_variant
from ftrace_core.explore.footprints import HOOKS, TRACE
from ftrace_core.explore.run import Prepared, ScheduleRun
from ftrace_core.kernels import VARIANTS
from ftrace_core.scenario import builtin_names, load_scenario, parse_scenario
from emu.explore import Plan


def page(addr: int) -> tuple:
    return ("mem", addr >> 12)


def _step(kernel, tracker, fn, *args):
    tracker.take()
    kernel.machine.begin_step()
    kernel.call(fn, *args)
    return tracker.take()


def test_a_precise_tracker_sees_the_pages_guest_code_reads_writes_and_runs(kernel):
    src, dst = kernel.symbol("linux_banner"), kernel.symbol("log_dropped")
    tracker = Tracker(precise=True)
    kernel.machine.tracker = tracker
    try:
        fp = _step(kernel, tracker, "memcpy", dst, src, 8)
        assert not fp.everything
        assert page(dst) in fp.writes
        assert page(src) in fp.reads and page(src) not in fp.writes
        code = ("code", kernel.symbol("memcpy") >> 12)  # its code: run, not read as data
        assert code in fp.reads and code not in fp.writes
        assert ("code", dst >> 12) in fp.writes  # a store changes the page's code too
        # A page run from is seen when then read as data: the entry a fetch fills allows
        # fetches only.
        fp = _step(kernel, tracker, "memcpy", dst, kernel.symbol("memcpy"), 8)
        assert code in fp.reads and page(kernel.symbol("memcpy")) in fp.reads
        # A page first read, then written, is seen written: while recording, the entry a
        # read fills allows reads only, so the store misses again.
        fp = _step(kernel, tracker, "memcpy", src + 64, src, 8)
        assert page(src) in fp.writes
        # A step sees its own pages only: the TLB is emptied when a step begins, so what an
        # earlier step had filled is missed, and reported, again.
        fp = _step(kernel, tracker, "memcpy", dst, src, 8)
        assert page(dst) in fp.writes and page(src) in fp.reads and page(src) not in fp.writes
    finally:
        kernel.machine.tracker = None


def test_a_coarse_tracker_counts_guest_code_as_everything(kernel):
    tracker = Tracker()
    kernel.machine.tracker = tracker
    try:
        assert _step(kernel, tracker, "memcpy", kernel.symbol("log_dropped"), kernel.symbol("linux_banner"), 8).everything
    finally:
        kernel.machine.tracker = None


def test_the_race_guest_steps_touch_pages_and_the_hooks_state_not_everything():
    """On the race (legacy), the steps that run guest code (the module's init, its two
    calls) read the state the tracer's hooks see and write the trace; CPU 0's steps that
    change ftrace's ops write that state; nothing is "everything"."""
    prepared = Prepared(load_scenario("race"), "legacy", "coarse", 1000)
    run = ScheduleRun(prepared, Plan(()))
    labels = []
    while run.step():
        labels.append(run.sched.tasks[run.nodes[-1].chosen].last_label)
    nodes = run.nodes
    assert not any(n.footprint.everything for n in nodes)
    # race_mod's init (the step that ends at module_live), then its two calls
    guest = [nodes[labels.index("module_live")].footprint, nodes[-2].footprint, nodes[-1].footprint]
    assert labels[-2:] == ["command", None] and nodes[-1].chosen == nodes[-2].chosen == 1
    for fp in guest:
        assert HOOKS in fp.reads and TRACE in fp.writes
        assert any(t[0] == "mem" for t in fp.reads)
    writers = [labels[i] for i, n in enumerate(nodes) if n.chosen == 0 and HOOKS in n.footprint.writes]
    # register_ftrace_function() and the update's end change what the hooks see
    assert writers and writers[-1] is None  # the last step: ftrace_startup() done, locks released


SMALL = parse_scenario("""
cpu 0: echo function > current_tracer
cpu 1: echo get_current_pid > set_ftrace_filter
cpu 1: call workload_getpid
""", "small.scn")


@pytest.mark.parametrize("reduction", ["dpor", "sleep-sets"])
def test_page_footprints_find_the_final_states_and_failures_coarse_ones_find(reduction):
    """A small scenario, every schedule (the race and the other built-in scenarios are
    checked by the slow test below)."""
    page_fp = explore_variant(SMALL, "fixed", footprints="page", por=reduction)
    coarse = explore_variant(SMALL, "fixed", footprints="coarse", por=reduction)
    assert len(coarse.final_states) > 1
    assert page_fp.final_states == coarse.final_states
    assert set(page_fp.kinds) == set(coarse.kinds)
    assert page_fp.runs < coarse.runs  # fewer classes of equivalent runs: fewer steps depend on each other


#: At record granularity each call-site write is a step: CPU 0 enables two sites, kmalloc's
#: on the page of workload_getpid, which CPU 1 runs (get_current_pid is one of its callees).
SITES = parse_scenario("""
cpu 0: echo get_current_pid kmalloc > set_ftrace_filter
cpu 0: echo function > current_tracer
cpu 1: call workload_getpid
""", "sites.scn")


def _site_run():
    prepared = Prepared(SITES, "fixed", "record", 1000)
    run = ScheduleRun(prepared, Plan(()))
    while run.step():
        pass
    return prepared.system.kernel, run.nodes


def _prot(kind: str, addr: int) -> tuple:
    return ("prot", kind, addr >> 12)


def test_a_protection_change_conflicts_with_the_accesses_it_decides_only(kernel):
    """A page's protection is a token per kind of access (emu.footprint): making kernel text
    writable (set_kernel_text_rw(), ftrace_arch_code_modify_prepare(), v4.5) decides whether
    a store to it faults, not whether code runs from it: so it commutes with running that
    code, and not with a store.  Setting a kind to the value it has changes nothing: that
    is a read of it, as a compare-and-swap that fails is a read; it still conflicts with a
    change of the same kind."""
    from emu.machine import Perm
    text = kernel.symbol("memcpy")
    tracker = Tracker(precise=True)
    machine = kernel.machine
    machine.tracker = tracker
    try:
        tracker.take()
        machine.protect(text, 1, Perm.RWX, "rw")  # RX -> RWX: W changes
        rw = tracker.take()
        assert _prot("w", text) in rw.writes and _prot("x", text) in rw.reads and _prot("x", text) not in rw.writes
        assert ("code", text >> 12) not in rw.writes and page(text) not in rw.writes
        run = _step(kernel, tracker, "memcpy", kernel.symbol("log_dropped"), kernel.symbol("linux_banner"), 8)
        assert _prot("x", text) in run.reads and not run.conflicts(rw)
        store = _step(kernel, tracker, "memset", text + 0x20, 0x90, 1)  # now allowed: RWX
        assert _prot("w", text) in store.reads and store.conflicts(rw)
        machine.protect(text, 1, Perm.RWX, "again")  # nothing changes: a read of each kind
        again = tracker.take()
        assert not again.writes and again.conflicts(rw) and not again.conflicts(run)
        machine.protect(text, 1, Perm.RX, "ro")
        ro = tracker.take()
        assert ro.conflicts(again) and ro.conflicts(store) and not ro.conflicts(run)
    finally:
        machine.tracker = None
        machine.protect(text, 1, Perm.RX, "ro")


def _sites(tokens) -> set[int]:
    return {t[1] for t in tokens if t[0] == "site"}


def test_a_call_site_write_conflicts_with_code_that_runs_the_site_not_with_code_beside_it():
    """emu.footprint's site tokens: each write of ftrace's three passes (x86's
    ftrace_replace_code() through add_breakpoints / add_update / finish_update, v4.5)
    changes a record's bytes only, so it writes that site and the page's data, not the
    page's code; the block hook on each site says which sites a step runs."""
    kernel, nodes = _site_run()
    getpid, kmalloc, caller = (kernel.symbol(n) for n in ("get_current_pid", "kmalloc", "workload_getpid"))
    assert kmalloc >> 12 == caller >> 12  # beside the code CPU 1 runs
    writes = [n.footprint for n in nodes if n.chosen == 0 and _sites(n.footprint.writes)]
    assert [_sites(fp.writes) for fp in writes] == [{getpid}, {kmalloc}] * 3  # int3, tail, head
    for fp in writes[1:]:  # the first also updates the trampoline: a plain code write
        assert ("code", kmalloc >> 12) not in fp.writes and ("mem", next(iter(_sites(fp.writes))) >> 12) in fp.writes
    call = nodes[-1].footprint
    assert nodes[-1].chosen == 1 and {getpid, caller} <= _sites(call.reads) and kmalloc not in _sites(call.reads)
    assert ("code", caller >> 12) in call.reads
    for fp in writes[1:]:
        assert fp.conflicts(call) == (getpid in _sites(fp.writes))


@pytest.mark.parametrize("variant", ["legacy", "fixed"])
def test_site_footprints_find_the_final_states_coarse_ones_find_at_record_granularity(variant):
    page_fp = explore_variant(SITES, variant, footprints="page", granularity="record")
    coarse = explore_variant(SITES, variant, footprints="coarse", granularity="record")
    assert page_fp.complete and coarse.complete and len(coarse.final_states) > 1
    assert page_fp.final_states == coarse.final_states and set(page_fp.kinds) == set(coarse.kinds)
    assert page_fp.runs < coarse.runs


@pytest.mark.parametrize("bound", [1, 2])
def test_bounded_dpor_with_site_footprints_gives_plain_enumerations_verdict_at_record_granularity(bound):
    plain = explore_variant(SITES, "legacy", max_preemptions=bound, reduce=False, granularity="record")
    reduced = explore_variant(SITES, "legacy", max_preemptions=bound, reduce=True, granularity="record")
    assert plain.complete and reduced.complete and len(plain.final_states) > 1
    assert reduced.final_states == plain.final_states and set(reduced.kinds) == set(plain.kinds)
    assert reduced.runs < plain.runs


@pytest.mark.slow_explore
def test_every_scenario_and_variant_gives_the_same_verdict_under_both_relations():
    """Item 1's oracle (issue #18): every built-in scenario on every variant, unbounded: the
    same final states and failure kinds whichever relation the reduction (DPOR) uses, and
    every failing schedule either finds fails again, the same way, when replayed."""
    from ftrace_core.explore import cross_replay, map_forked

    cases = [(name, v) for name in builtin_names() for v in VARIANTS]

    def both(case):
        scenario = load_scenario(case[0])
        return (explore_variant(scenario, case[1], footprints="page"),
                explore_variant(scenario, case[1], footprints="coarse"))

    for (name, v), (page_fp, coarse) in zip(cases, map_forked(both, cases, 2)):
        assert page_fp.complete and coarse.complete
        assert page_fp.final_states == coarse.final_states, (name, v)
        assert set(page_fp.kinds) == set(coarse.kinds), (name, v)
        for found in (page_fp, coarse):
            if found.failing_schedules:
                replayed = cross_replay(load_scenario(name), found.failing_schedules, v)
                assert replayed["kind_of"] == found.failing_kind, (name, v, found.footprints)
