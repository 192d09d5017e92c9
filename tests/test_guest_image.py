"""The committed guest image is what DESIGN.md section 3 says: layout, call sites, exports."""

from __future__ import annotations

from capstone import CS_ARCH_X86, CS_MODE_64, Cs

import guest
from emu.elf import read_kernel_image, read_object
from emu.kernel import KERNEL_BASE, Kernel
from emu.machine import Perm


def _mcount_locs(kernel: Kernel) -> list[int]:
    start, stop = kernel.symbol("__start_mcount_loc"), kernel.symbol("__stop_mcount_loc")
    raw = kernel.machine.read(start, stop - start)
    return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]


def test_image_has_text_rodata_data_as_separate_page_aligned_segments():
    image = read_kernel_image(guest.VMLINUX)
    flags = [seg.flags & 7 for seg in image.segments]
    assert flags == [5, 4, 6]  # R-X, R, RW
    assert image.segments[0].vaddr == KERNEL_BASE
    assert all(seg.vaddr % 4096 == 0 for seg in image.segments)


def test_booted_protections_follow_the_segments(kernel):
    text, rodata, data = kernel.segments
    assert kernel.machine.perms_at(text.start) == Perm.RX
    assert kernel.machine.perms_at(rodata.start) == Perm.R
    assert kernel.machine.perms_at(data.start) == Perm.RW
    mcount = kernel.symbol("__start_mcount_loc")
    assert rodata.start <= mcount < rodata.end


def test_every_mcount_loc_entry_is_a_call_to_fentry(kernel):
    fentry = kernel.symbol("__fentry__")
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    locs = _mcount_locs(kernel)
    assert len(locs) >= 40
    for ip in locs:
        insn = next(md.disasm(kernel.machine.read(ip, 5), ip))
        assert (insn.mnemonic, insn.size) == ("call", 5), kernel.kallsyms.format(ip)
        assert int(insn.op_str, 16) == fentry
        # gcc puts the site first in the function: it is the symbol's own address.
        assert kernel.kallsyms.lookup(ip)[1] == 0


def test_trampoline_pieces_are_there(kernel):
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    site = kernel.symbol("ftrace_call")
    insn = next(md.disasm(kernel.machine.read(site, 5), site))
    assert insn.mnemonic == "call" and int(insn.op_str, 16) == kernel.symbol("ftrace_stub")
    assert kernel.machine.read(kernel.symbol("__fentry__"), 1) == b"\xc3"


def test_exports_come_from_ksymtab(kernel):
    for name in ("printk", "kmalloc", "kfree", "memcpy", "__fentry__"):
        assert kernel.exports[name] == kernel.symbol(name)
    assert "kmem_cache_init" not in kernel.exports


def test_shipped_modules_are_relocatable_objects_with_call_sites():
    for name in guest.MODULES:
        obj = read_object(guest.module_path(name).read_bytes(), name)
        assert any(s.name == "__mcount_loc" for s in obj.sections), name
        assert any(s.name == "init_module" for s in obj.symbols), name
