"""The ftrace core on in-memory text (no emulator): records, ops, hashes, decisions, bugs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.sched import run_to_completion
from ftrace_core.kernels import KERNELS
from ftrace_core.arch_x86 import NOP5, call_target, ftrace_call_replace
from ftrace_core.flags import (
    FTRACE_FL_DISABLED, FTRACE_FL_ENABLED, FTRACE_REF_MAX, BugType, UpdateAction, ftrace_rec_count,
)
from ftrace_core.hash import FtraceHash, hash_contains_ip
from ftrace_core.module import ftrace_module_enable, ftrace_module_init, ftrace_release_mod
from ftrace_core.ops import FtraceOps
from ftrace_core.testing import FAKE_BASE, fake_ftrace

FUNC_A = FAKE_BASE + 0x200
FUNC_B = FAKE_BASE + 0x220


def _run(gen):
    return run_to_completion(gen)


def test_boot_turns_every_call_site_into_the_nop_and_says_so():
    ftrace, text, env, sites = fake_ftrace(300)
    assert env.lines[0] == "ftrace: allocating 300 entries in 2 pages\n"
    assert [r.ip for r in ftrace.records] == sites
    assert all(text.read(ip, 5) == NOP5 for ip in sites)
    assert all(r.flags == 0 for r in ftrace.records)


def test_one_ops_tracing_everything_makes_every_site_call_the_trampoline():
    ftrace, text, env, sites = fake_ftrace()
    ops = FtraceOps("function", FUNC_A)
    assert _run(ftrace.register_ftrace_function(ops)) == 0
    caller = ftrace.arch.addrs.ftrace_caller
    for rec in ftrace.records:
        assert rec.flags == FTRACE_FL_ENABLED | 1
        assert call_target(rec.ip, text.read(rec.ip, 5)) == caller
    call = ftrace.arch.addrs.ftrace_call
    assert call_target(call, text.read(call, 5)) == FUNC_A
    assert not text.writable  # RO again after the update
    assert _run(ftrace.unregister_ftrace_function(ops)) == 0
    assert all(text.read(ip, 5) == NOP5 and ftrace.records.lookup(ip).flags == 0 for ip in sites)
    assert call_target(call, text.read(call, 5)) == ftrace.arch.addrs.ftrace_stub


def test_two_ops_go_through_the_list_func_and_count_twice():
    ftrace, text, env, sites = fake_ftrace()
    a = FtraceOps("a", FUNC_A)
    b = FtraceOps("b", FUNC_B, filter_hash=FtraceHash(sites[:3]))
    _run(ftrace.register_ftrace_function(a))
    _run(ftrace.register_ftrace_function(b))
    call = ftrace.arch.addrs.ftrace_call
    assert call_target(call, text.read(call, 5)) == ftrace.arch.addrs.ftrace_ops_list_func
    assert [r.refs for r in ftrace.records][:4] == [2, 2, 2, 1]
    _run(ftrace.unregister_ftrace_function(a))
    assert call_target(call, text.read(call, 5)) == FUNC_B
    assert [bool(r.flags & FTRACE_FL_ENABLED) for r in ftrace.records][:4] == [True, True, True, False]
    assert text.read(sites[3], 5) == NOP5


def test_decisions_are_plain_data():
    ftrace, text, env, sites = fake_ftrace(4)
    ops = FtraceOps("f", FUNC_A, filter_hash=FtraceHash([sites[1]]))
    ops.flags |= 1  # ENABLED, as ftrace_startup sets before counting
    ftrace.ops_list.append(ops)
    ftrace.ftrace_hash_rec_enable(ops)
    plans = [ftrace.plan_record(r, True)[0] for r in ftrace.records]
    assert plans == [UpdateAction.IGNORE, UpdateAction.MAKE_CALL, UpdateAction.IGNORE, UpdateAction.IGNORE]
    rec = ftrace.records.lookup(sites[1])
    rec.flags |= FTRACE_FL_ENABLED
    ftrace.ftrace_hash_rec_disable(ops)
    assert ftrace.plan_record(rec, True)[0] == UpdateAction.MAKE_NOP
    assert ftrace.plan_record(rec, False)[0] == UpdateAction.MAKE_NOP


def test_write_fault_reports_eperm_like_ftrace_bug_and_kills_ftrace():
    ftrace, text, env, sites = fake_ftrace(8)
    text.readonly_ranges.append((sites[5], sites[5] + 16))  # stays RO through prepare
    ops = FtraceOps("function", FUNC_A)
    _run(ftrace.register_ftrace_function(ops))
    assert ftrace.ftrace_disabled
    log = env.log
    assert f"ftrace faulted on writing [<{sites[5]:016x}>] fn_{sites[5] - FAKE_BASE:x}+0x0/0x10\n" in log
    assert "Setting ftrace call site to call ftrace function\n" in log
    assert f"ftrace record flags: {FTRACE_FL_ENABLED | 1:x}\n (1)  \n expected tramp: {ftrace.arch.addrs.ftrace_caller:x}\n" in log
    # the update stopped at the failing record: the ones after it were never touched
    assert text.read(sites[6], 5) == NOP5 and call_target(sites[4], text.read(sites[4], 5))
    assert _run(ftrace.register_ftrace_function(FtraceOps("again", FUNC_B))) == -19
    assert _run(ftrace.unregister_ftrace_function(ops)) == -19
    assert ftrace.ftrace_trace_function == ftrace.arch.addrs.ftrace_stub


def test_unexpected_bytes_report_einval_with_actual_and_expected():
    ftrace, text, env, sites = fake_ftrace(4)
    text.mem[sites[2] - FAKE_BASE:sites[2] - FAKE_BASE + 5] = b"\x90\x90\x90\x90\x90"
    _run(ftrace.register_ftrace_function(FtraceOps("function", FUNC_A)))
    log = env.log
    assert "ftrace failed to modify [<" in log
    assert " actual:   90:90:90:90:90\n expected: 0f:1f:44:00:00\n" in log
    assert ftrace.ftrace_disabled


def test_reference_count_overflow_warns_and_kills():
    ftrace, text, env, sites = fake_ftrace(2)
    ftrace.records.lookup(sites[0]).flags = FTRACE_REF_MAX - 1
    _run(ftrace.register_ftrace_function(FtraceOps("function", FUNC_A)))
    assert ftrace.ftrace_disabled
    # v4.5-v4.8 __ftrace_hash_rec_update: FTRACE_WARN_ON(ftrace_rec_count(rec) == FTRACE_REF_MAX)
    assert env.warnings == ["__ftrace_hash_rec_update"]
    assert ftrace.killed_by == "FTRACE_WARN_ON(ftrace_rec_count(rec) == FTRACE_REF_MAX) in __ftrace_hash_rec_update()"


def test_reference_count_underflow_warns_and_kills():
    ftrace, text, env, sites = fake_ftrace(2)
    ops = FtraceOps("function", FUNC_A)
    _run(ftrace.register_ftrace_function(ops))
    ftrace.records.lookup(sites[1]).flags &= ~0x1FFFFFF
    _run(ftrace.unregister_ftrace_function(ops))
    assert env.warnings[0] == "__ftrace_hash_rec_update"
    assert ftrace.killed_by == "FTRACE_WARN_ON(ftrace_rec_count(rec) == 0) in __ftrace_hash_rec_update()"
    assert ftrace.ftrace_disabled


# -- the reference-count invariant, against an independent oracle ---------------------------

ops_names = st.sampled_from(["a", "b", "c"])
site_sets = st.frozensets(st.integers(0, 11), max_size=5)
actions = st.one_of(
    st.tuples(st.just("register"), ops_names),
    st.tuples(st.just("unregister"), ops_names),
    st.tuples(st.just("filter"), ops_names, site_sets),
    st.tuples(st.just("notrace"), ops_names, site_sets),
)


def _check_invariants(ftrace, text, registered):
    caller = ftrace.arch.addrs.ftrace_caller
    for rec in ftrace.records:
        expected = sum(1 for o in registered.values() if hash_contains_ip(rec.ip, o.filter_hash, o.notrace_hash))
        assert ftrace_rec_count(rec.flags) == expected, rec
        assert bool(rec.flags & FTRACE_FL_ENABLED) == (expected > 0), rec
        code = text.read(rec.ip, 5)
        assert code == (ftrace_call_replace(rec.ip, caller) if expected else NOP5), rec


@settings(max_examples=150, deadline=None)
@given(st.lists(actions, max_size=14))
def test_reference_counts_match_the_enabled_ops_that_select_each_record(steps):
    ftrace, text, env, sites = fake_ftrace(12)
    all_ops = {n: FtraceOps(n, FUNC_A + i * 0x10) for i, n in enumerate("abc")}
    registered: dict[str, FtraceOps] = {}
    for step in steps:
        name = step[1]
        ops = all_ops[name]
        if step[0] == "register":
            ret = _run(ftrace.register_ftrace_function(ops))
            assert ret == (-16 if name in registered else 0)
            registered[name] = ops
        elif step[0] == "unregister":
            ret = _run(ftrace.unregister_ftrace_function(ops))
            assert ret == (0 if name in registered else -22)
            registered.pop(name, None)
        else:
            new = FtraceHash(sites[i] for i in step[2])

            def move(ops=ops, new=new, filt=step[0] == "filter"):
                yield from ftrace.ftrace_lock.acquire()
                try:
                    return (yield from ftrace.ftrace_hash_move_and_update_ops(ops, filt, new))
                finally:
                    ftrace.ftrace_lock.release()

            assert _run(move()) == 0
        _check_invariants(ftrace, text, registered)
    assert not ftrace.ftrace_disabled, env.warnings


# -- modules in the three variants -------------------------------------------------------------

@dataclass
class FakeModule:
    name: str
    mcount_locs: list
    base: int
    size: int

    def within_core(self, addr):
        return self.base <= addr < self.base + self.size


def _module(ftrace, text):
    """A fake module whose 4 call sites sit in the text's last page, which is kept read-only
    unless the test says otherwise."""
    base = text.base + len(text.mem) - 0x40
    for i in range(4):
        ip = base + i * 16
        text.mem[ip - text.base:ip - text.base + 5] = ftrace_call_replace(ip, ftrace.arch.addrs.mcount)
    return FakeModule("mod", [base + i * 16 for i in range(4)], base, 0x40)


@pytest.mark.parametrize("variant", ["legacy", "seed", "fixed"])
def test_module_loaded_before_tracing_is_traced_once_tracing_starts(variant):
    ftrace, text, env, sites = fake_ftrace(8, variant)
    mod = _module(ftrace, text)
    text.writable = True
    _run(ftrace_module_init(ftrace, mod))
    text.writable = False
    if variant == "fixed":
        _run(ftrace_module_enable(ftrace, mod))
    _run(ftrace.register_ftrace_function(FtraceOps("function", FUNC_A)))
    assert not ftrace.ftrace_disabled
    assert all(ftrace.records.lookup(ip).flags == FTRACE_FL_ENABLED | 1 for ip in mod.mcount_locs)


@pytest.mark.parametrize("variant", ["seed", "fixed"])
def test_disabled_module_records_are_skipped_by_the_update(variant):
    ftrace, text, env, sites = fake_ftrace(8, variant)
    mod = _module(ftrace, text)
    text.writable = True
    ftrace.kernel = KERNELS["fixed"]  # records only: no enable yet
    _run(ftrace_module_init(ftrace, mod))
    ftrace.kernel = KERNELS[variant]
    text.writable = False
    text.readonly_ranges.append((mod.base, mod.base + mod.size))
    _run(ftrace.register_ftrace_function(FtraceOps("function", FUNC_A)))
    assert not ftrace.ftrace_disabled
    assert all(ftrace.records.lookup(ip).flags == FTRACE_FL_DISABLED for ip in mod.mcount_locs)
    text.readonly_ranges.clear()
    _run(ftrace_module_enable(ftrace, mod))
    assert all(ftrace.records.lookup(ip).flags == FTRACE_FL_ENABLED | 1 for ip in mod.mcount_locs)
    assert not text.writable


def test_legacy_module_load_while_tracing_enables_its_records_at_once():
    ftrace, text, env, sites = fake_ftrace(8, "legacy")
    _run(ftrace.register_ftrace_function(FtraceOps("function", FUNC_A, notrace_hash=FtraceHash([sites[0]]))))
    mod = _module(ftrace, text)
    text.writable = True
    _run(ftrace_module_init(ftrace, mod))
    assert [ftrace.records.lookup(ip).refs for ip in mod.mcount_locs] == [1, 1, 1, 1]
    assert all(call_target(ip, text.read(ip, 5)) == ftrace.arch.addrs.ftrace_caller for ip in mod.mcount_locs)


def test_release_mod_removes_the_module_pages():
    ftrace, text, env, sites = fake_ftrace(8)
    mod = _module(ftrace, text)
    text.writable = True
    _run(ftrace_module_init(ftrace, mod))
    assert len(ftrace.records) == 12
    _run(ftrace_release_mod(ftrace, mod))
    assert [r.ip for r in ftrace.records] == sites


def test_init_bug_type_is_reported_when_boot_conversion_fails():
    ftrace, text, env, sites = fake_ftrace(4)
    mod = _module(ftrace, text)  # text not writable: the nop conversion faults
    _run(ftrace_module_init(ftrace, mod))
    assert "Initializing ftrace call sites\n" in env.lines
    assert ftrace.bug_type == BugType.INIT and ftrace.ftrace_disabled


# -- the decision per record, against an independent statement of the rules ------------------

def _oracle_action(flags: int, enable: bool) -> UpdateAction:
    from ftrace_core.flags import FTRACE_FL_REGS, FTRACE_FL_REGS_EN, FTRACE_FL_TRAMP, FTRACE_FL_TRAMP_EN

    if flags & FTRACE_FL_DISABLED:
        return UpdateAction.IGNORE
    want = enable and ftrace_rec_count(flags) > 0
    have = bool(flags & FTRACE_FL_ENABLED)
    if want and not have:
        return UpdateAction.MAKE_CALL
    if have and not want:
        return UpdateAction.MAKE_NOP
    if want and have and (bool(flags & FTRACE_FL_REGS) != bool(flags & FTRACE_FL_REGS_EN)
                          or bool(flags & FTRACE_FL_TRAMP) != bool(flags & FTRACE_FL_TRAMP_EN)):
        return UpdateAction.MODIFY_CALL
    return UpdateAction.IGNORE


@settings(max_examples=300, deadline=None)
@given(state=st.integers(0, 0x7F), count=st.integers(0, 3), enable=st.booleans())
def test_check_record_chooses_the_right_action(state, count, enable):
    from ftrace_core.records import DynFtrace

    ftrace, text, env, sites = fake_ftrace(1)
    flags = (state << 25) | count
    rec = DynFtrace(sites[0], flags)
    assert ftrace.ftrace_test_record(rec, enable) == _oracle_action(flags, enable)
    assert rec.flags == flags  # testing never commits


def test_save_regs_ops_marks_records_regs_and_the_site_follows():
    from ftrace_core.flags import FTRACE_FL_REGS, FTRACE_FL_REGS_EN, FTRACE_OPS_FL_SAVE_REGS

    ftrace, text, env, sites = fake_ftrace(4)
    plain = FtraceOps("plain", FUNC_A)
    regs = FtraceOps("regs", FUNC_B, flags=FTRACE_OPS_FL_SAVE_REGS, filter_hash=FtraceHash([sites[0]]))
    _run(ftrace.register_ftrace_function(plain))
    _run(ftrace.register_ftrace_function(regs))
    rec = ftrace.records.lookup(sites[0])
    assert rec.flags & FTRACE_FL_REGS and rec.flags & FTRACE_FL_REGS_EN and rec.refs == 2
    assert not ftrace.records.lookup(sites[1]).flags & FTRACE_FL_REGS
    _run(ftrace.unregister_ftrace_function(regs))
    assert not rec.flags & (FTRACE_FL_REGS | FTRACE_FL_REGS_EN) and rec.refs == 1
    assert not ftrace.ftrace_disabled


@pytest.mark.parametrize("patching", ["direct", "breakpoints"])
@settings(max_examples=60, deadline=None)
@given(st.lists(actions, max_size=10), st.one_of(st.none(), st.integers(0, 11)), st.one_of(st.none(), st.integers(0, 11)))
def test_batched_rewrites_leave_exactly_what_record_by_record_rewrites_leave(patching, steps, readonly, corrupt):
    """One pass of writes on the CPU versus a point per record: same flags, bytes, reports."""
    outcomes = []
    for record_points in (True, False):
        ftrace, text, env, sites = fake_ftrace(12, patching=patching)
        ftrace.record_points = record_points
        if readonly is not None:
            text.readonly_ranges.append((sites[readonly], sites[readonly] + 16))
        if corrupt is not None:
            off = sites[corrupt] - FAKE_BASE
            text.mem[off:off + 5] = b"\x66\x90\x66\x90\x90"
        all_ops = {n: FtraceOps(n, FUNC_A + i * 0x10) for i, n in enumerate("abc")}
        for step in steps:
            ops = all_ops[step[1]]
            if step[0] == "register":
                _run(ftrace.register_ftrace_function(ops))
            elif step[0] == "unregister":
                _run(ftrace.unregister_ftrace_function(ops))
            else:
                new = FtraceHash(sites[i] for i in step[2])
                _run(ftrace.ftrace_hash_move_and_update_ops(ops, step[0] == "filter", new))
        outcomes.append(([r.flags for r in ftrace.records], bytes(text.mem), env.lines, env.warnings,
                         ftrace.ftrace_disabled))
    assert outcomes[0] == outcomes[1]


class _FailingWrites:
    """Text whose writes fault when `fails(index, data)` says so (index counts writes)."""

    def __init__(self, text, fails):
        from ftrace_core.text import TextFault

        real, count = text.write, [0]

        def write(ip, data):
            count[0] += 1
            if fails(count[0], data):
                raise TextFault(ip, "read-only")
            real(ip, data)
        text.write = write


def test_a_failed_ftrace_call_update_puts_the_first_byte_back():
    """arch/x86/kernel/ftrace.c ftrace_modify_code() (v4.5-v4.8.17): add_break, the other four
    bytes, the first; if the four fail, fail_update writes the old first byte back;
    update_ftrace_func() names the site for ftrace_int3_handler()."""
    from ftrace_core.breakpoints import ftrace_int3_handler

    ftrace, text, env, sites = fake_ftrace(4)
    arch = ftrace.arch
    arch.breakpoints = True
    text.writable = True
    ip = arch.addrs.ftrace_call
    before = text.read(ip, 5)
    _FailingWrites(text, lambda i, data: len(data) == 4)  # only the four bytes after the int3 fail
    assert arch.ftrace_update_ftrace_func(arch.addrs.ftrace_caller) == -1  # -EPERM
    assert text.read(ip, 5) == before  # the int3 was taken out again
    assert arch.ftrace_update_func == ip
    ftrace.modifying_ftrace_code = 1
    assert ftrace_int3_handler(ftrace, ip + 1) == ip + 5  # the site being updated: skipped
    assert ftrace_int3_handler(ftrace, arch.addrs.ftrace_stub + 1) is None  # any other: not ftrace's


def test_an_int3_that_cannot_be_taken_out_of_ftrace_call_is_a_bug():
    ftrace, text, env, sites = fake_ftrace(4)
    arch = ftrace.arch
    arch.breakpoints = True
    text.writable = True
    bugs = []
    arch.bug = lambda where, detail: bugs.append(where)
    _FailingWrites(text, lambda i, data: i > 1)  # the int3 lands, then nothing more can be written
    arch.ftrace_update_ftrace_func(arch.addrs.ftrace_caller)
    assert bugs == ["arch/x86/kernel/ftrace.c:ftrace_modify_code"]
    assert text.read(arch.addrs.ftrace_call, 1) == b"\xcc"
