"""Disassembly of guest functions from emulated memory, with their ftrace call sites' state."""

from __future__ import annotations

import re

import pytest

import guest
from emu.errors import SymbolError
from emu.sched import Point
from ftrace_core import boot
from ftrace_core.disasm import disassemble, disassemble_function

NOP_SITE = "call site: nop (0f 1f 44 00 00), not traced"


@pytest.fixture
def system():
    return boot("fixed")


def _insn_lines(listing: str) -> list[str]:
    return [line for line in listing.splitlines() if re.match(r"  [0-9a-f]{16} <\+0x[0-9a-f]+>:", line)]


def _calls(listing: str) -> list[str]:
    lines = listing.splitlines()
    return [line.strip() for line in lines[lines.index("calls:") + 1:]]


def test_kernel_function_nop_site_then_call_to_ftrace_caller(system):
    sym = system.kernel.kallsyms.get("vfs_read")
    listing = disassemble(system, "vfs_read")
    lines = listing.splitlines()
    assert lines[0] == f"vfs_read  {sym.addr:#x}-{sym.addr + sym.size:#x}  ({sym.size} bytes)"
    assert lines[1] == NOP_SITE
    first = _insn_lines(listing)[0]
    assert first.startswith(f"  {sym.addr:016x} <+0x0>:")
    assert "0f 1f 44 00 00" in first and "nop" in first
    # The listing covers the whole function, instruction after instruction.
    d = disassemble_function(system, "vfs_read")
    assert sum(len(i.raw) for i in d.instructions) == sym.size
    assert len(_insn_lines(listing)) == len(d.instructions)

    system.tracefs.write("current_tracer", "function")
    listing = disassemble(system, "vfs_read")
    caller = system.kernel.kallsyms.get("ftrace_caller")
    assert listing.splitlines()[1] == (f"call site: call ftrace_caller+0x0/{caller.size:#x}, "
                                       f"traced by 1 ops (flags ENABLED)")
    first = _insn_lines(listing)[0]
    assert re.search(rf"e8 ([0-9a-f]{{2}} ){{3}}[0-9a-f]{{2}} +call +{caller.addr:#x} <ftrace_caller\+0x0/", first)
    # The call site is not one of the function's calls.
    assert not any(c.startswith(("ftrace_caller", "__fentry__")) for c in _calls(listing))

    system.tracefs.write("current_tracer", "nop")
    assert disassemble(system, "vfs_read").splitlines()[1] == NOP_SITE


def test_filtered_out_function_stays_nop(system):
    system.tracefs.write("set_ftrace_filter", "vfs_write")
    system.tracefs.write("current_tracer", "function")
    assert disassemble(system, "vfs_read").splitlines()[1] == NOP_SITE
    assert "traced by 1 ops" in disassemble(system, "vfs_write").splitlines()[1]


def test_module_function_shows_module_and_its_calls(system):
    system.insmod(guest.module_path("race_mod"), cpu=1)
    listing = disassemble(system, "race_mod_work")
    sym = system.kernel.kallsyms.get("race_mod_work")
    compute = system.kernel.kallsyms.get("race_mod_compute")
    assert listing.startswith(f"race_mod_work [race_mod]  {sym.addr:#x}-")
    assert listing.splitlines()[1] == NOP_SITE
    target = f"race_mod_compute+0x0/{compute.size:#x} [race_mod]"
    assert target in _calls(listing)
    assert any(f"call   {compute.addr:#x} <{target}>" in line for line in _insn_lines(listing))

    system.tracefs.write("current_tracer", "function")
    listing = disassemble(system, "race_mod_work")
    assert listing.splitlines()[1].startswith("call site: call ftrace_caller+0x0/")
    assert _calls(listing) == disassemble_function(system, "race_mod_work").calls
    assert target in _calls(listing) and not any(c.startswith("ftrace_caller") for c in _calls(listing))


def test_module_site_before_ftrace_converts_it(system):
    """Mid-load, between ftrace_process_locs() creating the records and ftrace_update_code()
    turning them into nops, the sites are still the compiler's `call __fentry__`."""
    path = guest.module_path("race_mod")
    load = system.kernel.modules.load_module(system.cpus[1], path.read_bytes(), str(path), None)
    for step in load:
        if isinstance(step, Point) and step.label == "ftrace_update_code":
            break
    else:
        pytest.fail("load_module never reached ftrace_update_code")
    d = disassemble_function(system, "race_mod_compute")
    assert d.call_site.state == "fentry"
    assert d.format().splitlines()[1] == "call site: call __fentry__ (not yet converted)"
    assert "<__fentry__+0x0/" in _insn_lines(d.format())[0]
    for _ in load:
        pass
    assert disassemble(system, "race_mod_compute").splitlines()[1].startswith(
        "call site: nop (0f 1f 44 00 00), not traced")


def test_notrace_function_has_no_call_site(system):
    listing = disassemble(system, "function_trace_call")
    assert listing.splitlines()[1] == "no ftrace call site (notrace)"
    assert disassemble_function(system, "function_trace_call").call_site.state == "none"


def test_unknown_symbol(system):
    with pytest.raises(SymbolError, match=r"^unknown symbol no_such_function$"):
        disassemble(system, "no_such_function")


def test_data_symbol_is_not_a_function(system):
    assert not system.kernel.kallsyms.get("linux_banner").is_text
    with pytest.raises(SymbolError, match=r"^linux_banner is not a function$"):
        disassemble(system, "linux_banner")
