"""The x86 encodings the arch layer writes, cross-checked with keystone and capstone."""

from __future__ import annotations

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from hypothesis import given, settings
from hypothesis import strategies as st
from keystone import KS_ARCH_X86, KS_MODE_64, Ks

from ftrace_core.arch_x86 import NOP5, call_target, ftrace_call_replace, ftrace_jmp_replace

ks = Ks(KS_ARCH_X86, KS_MODE_64)
md = Cs(CS_ARCH_X86, CS_MODE_64)
KERNEL = 0xFFFFFFFF81000000

near = st.integers(-(1 << 30), 1 << 30)


@settings(max_examples=60, deadline=None)
@given(site=st.integers(0, 1 << 20), delta=near)
def test_call_encoding_matches_keystone(site, delta):
    ip = KERNEL + site
    target = ip + delta
    ours = ftrace_call_replace(ip, target)
    theirs, _ = ks.asm(f"call {target:#x}", ip)
    assert ours == bytes(theirs)
    assert call_target(ip, ours) == target


@settings(max_examples=30, deadline=None)
@given(site=st.integers(0, 1 << 20), delta=near.filter(lambda d: abs(d) > 200))
def test_jmp_encoding_matches_keystone(site, delta):
    ip = KERNEL + site
    target = ip + delta
    theirs, _ = ks.asm(f"jmp {target:#x}", ip)
    assert ftrace_jmp_replace(ip, target) == bytes(theirs)


def test_module_to_kernel_call_is_in_range():
    ip, target = 0xFFFFFFFFA0000010, KERNEL + 0x1234
    insn = next(md.disasm(ftrace_call_replace(ip, target), ip))
    assert insn.mnemonic == "call" and int(insn.op_str, 16) == target


def test_nop5_is_the_five_byte_nop():
    # keystone 0.9.2 assembles "nop dword ptr [rax + rax]" to 0f 18 24 00 (a prefetch), so
    # the nop is checked by decoding it instead.
    insn = next(md.disasm(NOP5, KERNEL))
    assert (insn.mnemonic, insn.op_str, insn.size) == ("nop", "dword ptr [rax + rax]", 5)
