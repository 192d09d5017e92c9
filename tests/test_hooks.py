"""emu.hooks: block hooks on single addresses (the call audit's, one per call site) run from
one C block hook (emu/native/sites.c) rather than from Unicorn's list, with the semantics
Unicorn's own block hooks have: once per block that starts there, in the order added, a
failure stopping the run and surfacing from the call."""

from __future__ import annotations

import pytest
from unicorn import unicorn_const as uc_const

from emu.sched import run_to_completion


def _entry_hook(kernel, symbol, seen, tag):
    def on_entry(uc, address, size, data):
        seen.append((tag, address, size > 0, data))
    return kernel.machine.hooks.add(uc_const.UC_HOOK_BLOCK, on_entry, begin=kernel.symbol(symbol),
                                    end=kernel.symbol(symbol))


def test_a_hook_on_a_function_entry_runs_once_a_call_in_the_order_added(kernel):
    seen: list = []
    first = _entry_hook(kernel, "workload_getpid", seen, "first")
    second = _entry_hook(kernel, "workload_getpid", seen, "second")
    elsewhere = _entry_hook(kernel, "memset", seen, "memset")
    try:
        for _ in range(3):
            kernel.call("workload_getpid")
        addr = kernel.symbol("workload_getpid")
        assert seen == [("first", addr, True, None), ("second", addr, True, None)] * 3
        kernel.machine.hooks.remove(first)
        seen.clear()
        kernel.call("workload_getpid")
        assert seen == [("second", addr, True, None)]
    finally:
        for handle in (first, second, elsewhere):
            kernel.machine.hooks.remove(handle)
    seen.clear()
    kernel.call("workload_getpid")
    assert seen == []


def test_a_hook_that_raises_stops_the_call_and_the_next_hooks_there(kernel):
    seen: list = []

    def broken(uc, address, size, data):
        raise ValueError("hook broke")
    addr = kernel.symbol("workload_getpid")
    bad = kernel.machine.hooks.add(uc_const.UC_HOOK_BLOCK, broken, begin=addr, end=addr)
    after = _entry_hook(kernel, "workload_getpid", seen, "after")
    try:
        with pytest.raises(ValueError, match="hook broke"):
            kernel.call("workload_getpid")
        assert seen == []
    finally:
        kernel.machine.hooks.remove(bad)
        kernel.machine.hooks.remove(after)
    assert kernel.call("workload_getpid") == kernel.call("workload_getpid")  # the machine goes on


def test_a_call_cut_into_quanta_meets_each_entry_once(kernel):
    """A slice may stop right before a hooked block; the hook then runs when the block does,
    in the next slice (the instruction counter's hook stops the run before the site's)."""
    seen: list = []
    handle = _entry_hook(kernel, "kmalloc", seen, "kmalloc")
    try:
        kernel.call("workload_run", 2)
        whole = list(seen)
        seen.clear()
        run_to_completion(kernel.cpus[0].call(kernel.symbol("workload_run"), 2, quantum=7))
        assert len(whole) > 0 and seen == whole
    finally:
        kernel.machine.hooks.remove(handle)
