"""The machine: running guest code on either CPU, real protections, the text-write path."""

from __future__ import annotations

import pytest

from emu.cpu import Task
from emu.errors import GuestFault, MemoryAccessError, TextWriteFault
from emu.machine import Perm, page_align_down


def test_boot_prints_banner_to_dmesg(kernel):
    dmesg = kernel.dmesg()
    assert dmesg.startswith("[    0.000000] Linux version 4.8.0-ftrace-emu")
    assert all(line.startswith("[") for line in dmesg.splitlines())


@pytest.mark.parametrize("cpu", [0, 1])
def test_getpid_is_per_cpu_current(kernel, cpu):
    kernel.cpus[cpu].set_task(Task("bash", 300 + cpu))
    assert kernel.call("workload_getpid", cpu=cpu) == 300 + cpu


def test_store_to_kernel_text_faults_and_store_to_data_succeeds(kernel):
    text = kernel.symbol("workload_run")
    data = kernel.symbol("log_dropped")
    with pytest.raises(GuestFault) as info:
        kernel.call("memset", text, 0x90, 1)
    fault = info.value
    assert fault.kind == "write" and fault.address == text
    assert "Oops: 0003 [#1] SMP" in fault.report  # present | write: a protection fault
    assert "]  [<" in fault.report and "] memset+0x" in fault.report
    assert kernel.machine.read(text, 5)[0] == 0xE8  # unchanged
    kernel.call("memset", data, 0x5A, 8)
    assert kernel.machine.read(data, 8) == b"\x5a" * 8


def test_cpu_keeps_working_after_a_fault(kernel):
    with pytest.raises(GuestFault):
        kernel.call("memset", 0, 0, 1)
    assert kernel.call("strlen", kernel.symbol("__log_buf")) > 0


def test_null_dereference_reads_like_an_oops(kernel):
    kernel.cpus[1].set_task(Task("insmod", 42))
    with pytest.raises(GuestFault) as info:
        kernel.call("memset", 8, 0, 1, cpu=1)
    report = info.value.report
    # v4.5 arch/x86/mm/fault.c show_fault_oops()
    assert report.splitlines()[0] == "BUG: unable to handle kernel NULL pointer dereference at 0000000000000008"
    assert report.splitlines()[1].startswith("IP: [<")
    assert "Oops: 0002 [#1] SMP" in report  # not present | write
    assert "\nCR2: 0000000000000008\n" in report
    assert "CPU: 1 PID: 42 Comm: insmod" in report


def test_host_write_never_bypasses_text_protection(kernel):
    text = kernel.symbol("workload_run")
    with pytest.raises(MemoryAccessError, match="refused"):
        kernel.machine.write(text, b"\x90")
    with pytest.raises(MemoryAccessError, match="refused"):
        kernel.machine.write(kernel.symbol("__start_mcount_loc"), b"\0")


def test_text_write_through_the_cpu_faults_on_read_only_text(kernel):
    site = kernel.symbol("workload_getpid")
    with pytest.raises(TextWriteFault) as info:
        kernel.text.write(kernel.cpus[0], [(site, b"\x0f\x1f\x44\x00\x00")])
    assert info.value.address == site and info.value.index == 0


def test_text_write_takes_effect_on_the_next_call_after_the_function_ran(kernel):
    kernel.cpus[0].set_task(Task("bash", 77))
    fn = kernel.symbol("workload_getpid")
    assert kernel.call(fn) == 77  # translated and cached now
    page = page_align_down(fn)
    kernel.machine.protect(page, 0x2000, Perm.RWX)
    # mov eax, 7; ret -- the host's caller (the return trap) is on a page of its own.
    kernel.text.write(kernel.cpus[0], [(fn, b"\xb8\x07\x00\x00\x00\xc3")])
    kernel.machine.protect(page, 0x2000, Perm.RX)
    assert kernel.call(fn) == 7
    assert kernel.call(fn, cpu=1) == 7


def test_memory_map_names_ranges_with_protections(kernel):
    entries = {e.name: e for e in kernel.memory_map()}
    assert entries["kernel .text"].perms == Perm.RX
    assert entries["kernel .rodata"].perms == Perm.R
    assert entries["kernel .data/.bss"].perms == Perm.RW
    stack = entries["cpu0 stack"]
    assert stack.end - stack.start >= 64 * 1024
    # guard pages: nothing mapped right below or above the stack
    assert kernel.machine.perms_at(stack.start - 1) is None
    assert kernel.machine.perms_at(stack.end) is None


def _workload_checksum(n: int) -> int:
    """workload_run's documented checksum (guest/kernel/workload.c), recomputed here."""
    total = 0
    for i in range(n):
        for k in range(16 + i % 48):
            total = (total * 31 + ord("a") + (i + k) % 26) % (1 << 32)
    return (total + n) % (1 << 32)


@pytest.mark.parametrize("cpu", [0, 1])
def test_workload_returns_its_checksum_on_either_cpu(kernel, cpu):
    assert kernel.call("workload_run", 10, cpu=cpu) == _workload_checksum(10)
    assert kernel.call("workload_fs_roundtrip", 300, cpu=cpu) == 300


def test_calls_in_quanta_yield_and_give_the_same_result(kernel):
    from emu.cpu import Quantum

    gen = kernel.cpus[1].call(kernel.symbol("workload_run"), 3, quantum=200)
    quanta = 0
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        assert isinstance(step, Quantum) and step.cpu == 1
        quanta += 1
    assert quanta > 10
    assert result == _workload_checksum(3)


def test_host_side_region_cache_agrees_with_unicorn_after_changes(kernel):
    import guest

    kernel.modules.insmod(kernel.cpus[1], guest.module_path("race_mod"))
    kernel.set_kernel_text_rw()
    kernel.modules.rmmod(kernel.cpus[1], "race_mod")
    kernel.set_kernel_text_ro()
    unicorn = sorted((b, e + 1, int(p)) for b, e, p in kernel.machine.uc.mem_regions())
    assert [(b, e, int(p)) for b, e, p in kernel.machine._regions] == unicorn
