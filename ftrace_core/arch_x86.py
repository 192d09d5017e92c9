"""Port of arch/x86/kernel/ftrace.c: call-site encodings and how a site is rewritten.

Every rewrite goes through ftrace_modify_code_direct(): read the 5 bytes back, compare them
with what the core believes is there (-EINVAL if not), write the new ones through the text
port (-EPERM if the store faults).  Boot and module-load conversions are direct in the kernel
too; runtime updates here are direct as well (the int3 protocol of 4.8 is not ported yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .flags import EFAULT, EINVAL, EPERM, UpdateAction
from .text import TextFault, TextPort

MCOUNT_INSN_SIZE = 5
#: The 5-byte nop x86-64 uses for call sites (P6_NOP5 / BYTES_NOP5).
NOP5 = bytes.fromhex("0f1f440000")


def ftrace_call_replace(ip: int, addr: int) -> bytes:
    """e8 rel32: a call at ip to addr."""
    rel = (addr - (ip + MCOUNT_INSN_SIZE)) & 0xFFFFFFFF
    return b"\xe8" + rel.to_bytes(4, "little")


def ftrace_jmp_replace(ip: int, addr: int) -> bytes:
    rel = (addr - (ip + MCOUNT_INSN_SIZE)) & 0xFFFFFFFF
    return b"\xe9" + rel.to_bytes(4, "little")


def call_target(ip: int, insn: bytes) -> int | None:
    """The target of an e8/e9 rel32 at ip, or None."""
    if len(insn) < 5 or insn[0] not in (0xE8, 0xE9):
        return None
    rel = int.from_bytes(insn[1:5], "little", signed=True)
    return (ip + MCOUNT_INSN_SIZE + rel) & ((1 << 64) - 1)


@dataclass(frozen=True)
class Addresses:
    """The guest addresses the arch layer patches between."""

    mcount: int  # __fentry__ (MCOUNT_ADDR)
    ftrace_caller: int  # FTRACE_ADDR (and FTRACE_REGS_ADDR: no separate regs caller here)
    ftrace_call: int  # the call site inside ftrace_caller
    ftrace_stub: int
    ftrace_ops_list_func: int  # what ftrace_call calls with several ops registered
    ftrace_graph_call: int = 0  # the jmp in ftrace_caller the graph tracer redirects
    ftrace_graph_caller: int = 0  # where it jumps with function_graph on
    ftrace_graph_return: int = 0  # where it jumps otherwise


class ArchX86:
    def __init__(self, text: TextPort, addrs: Addresses):
        self.text = text
        self.addrs = addrs
        self.ftrace_expected: bytes | None = None  # what the last verify expected (ftrace_bug shows it)
        self.breakpoints = False  # rewrite ftrace_call and ftrace_graph_call with int3 first

    def ftrace_modify_code_direct(self, ip: int, old: bytes, new: bytes) -> int:
        """Verify old bytes, write new; 0, -EFAULT, -EINVAL or -EPERM."""
        self.ftrace_expected = old
        try:
            replaced = self.text.read(ip, MCOUNT_INSN_SIZE)
        except TextFault:
            return -EFAULT
        if replaced != old:
            return -EINVAL
        try:
            self.text.write(ip, new)
        except TextFault:
            return -EPERM
        return 0

    def verify_sites(self, sites: list[tuple[int, bytes]]) -> tuple[int, int]:
        """The checking half of ftrace_modify_code_direct() over many sites in order: how many
        hold their expected bytes before the first that does not, and that one's -EFAULT or
        -EINVAL (0 if all do).  ftrace_expected is left naming the failing site's bytes."""
        window = self._read_window([ip for ip, _ in sites])
        for i, (ip, old) in enumerate(sites):
            try:
                failed = -EINVAL if window(ip) != old else 0
            except TextFault:
                failed = -EFAULT
            if failed:
                self.ftrace_expected = old
                return i, failed
        return len(sites), 0

    def ftrace_modify_code_batch(self, sites: list[tuple[int, bytes, bytes]]) -> tuple[int, int]:
        """ftrace_modify_code_direct() over many sites in order, with their writes done in one
        pass on the CPU: every site is verified first, the verified ones written.  Returns
        (sites done, 0) or (index of the first failure, -errno), as the site-by-site loop
        stopping at its first failure would leave things."""
        verified, failed = self.verify_sites([(ip, old) for ip, old, _ in sites])
        writes = [(ip, new) for ip, _, new in sites[:verified]]
        landed = self.text.write_batch(writes) if writes else 0
        if landed < len(writes):
            self.ftrace_expected = sites[landed][1]
            return landed, -EPERM
        return landed, failed

    def _read_window(self, ips: list[int]):
        """probe_kernel_read for many sites: one read of the range they span when it is
        small enough (boot converts thousands of sites), else one read per site."""
        if len(ips) < 16:
            return lambda ip: self.text.read(ip, MCOUNT_INSN_SIZE)
        lo = min(ips)
        hi = max(ips) + MCOUNT_INSN_SIZE
        if hi - lo > 64 << 20:
            return lambda ip: self.text.read(ip, MCOUNT_INSN_SIZE)
        try:
            blob = self.text.read(lo, hi - lo)
        except TextFault:  # a hole in the range: fall back to site by site
            return lambda ip: self.text.read(ip, MCOUNT_INSN_SIZE)
        return lambda ip: blob[ip - lo: ip - lo + MCOUNT_INSN_SIZE]

    def call_bytes(self, ip: int, addr: int) -> bytes:
        return ftrace_call_replace(ip, addr)

    def site_bytes(self, ip: int, action: UpdateAction, new_addr: int, cur_addr: int) -> tuple[bytes, bytes]:
        """(expected, new) bytes for an action, as make_call / make_nop / modify_call use."""
        if action == UpdateAction.MAKE_CALL:
            return NOP5, ftrace_call_replace(ip, new_addr)
        if action == UpdateAction.MAKE_NOP:
            return ftrace_call_replace(ip, cur_addr), NOP5
        return ftrace_call_replace(ip, cur_addr), ftrace_call_replace(ip, new_addr)

    def ftrace_make_nop(self, ip: int, addr: int) -> int:
        """A call to addr at ip becomes the nop."""
        return self.ftrace_modify_code_direct(ip, *self.site_bytes(ip, UpdateAction.MAKE_NOP, 0, addr))

    def ftrace_make_call(self, ip: int, addr: int) -> int:
        """The nop at ip becomes a call to addr."""
        return self.ftrace_modify_code_direct(ip, *self.site_bytes(ip, UpdateAction.MAKE_CALL, addr, 0))

    def ftrace_modify_call(self, ip: int, old_addr: int, addr: int) -> int:
        return self.ftrace_modify_code_direct(ip, *self.site_bytes(ip, UpdateAction.MODIFY_CALL, addr, old_addr))

    def ftrace_update_ftrace_func(self, func: int) -> int:
        """Point the trampoline's ftrace_call site at func (whatever it calls now)."""
        ip = self.addrs.ftrace_call
        try:
            old = self.text.read(ip, MCOUNT_INSN_SIZE)
        except TextFault:
            return -EFAULT
        new = ftrace_call_replace(ip, func)
        if old == new:
            return 0
        return self.ftrace_modify_code(ip, old, new)

    def ftrace_modify_code(self, ip: int, old: bytes, new: bytes) -> int:
        """A live site outside the records (ftrace_call, ftrace_graph_call): with breakpoints,
        as 4.8's update_ftrace_func does (int3, the other bytes, the first byte; run_sync
        between), else directly."""
        if not self.breakpoints:
            return self.ftrace_modify_code_direct(ip, old, new)
        self.ftrace_expected = old
        try:
            if self.text.read(ip, MCOUNT_INSN_SIZE) != old:
                return -EINVAL
            self.text.write(ip, b"\xcc")
            self.text.write(ip + 1, new[1:])
            self.text.write(ip, new[:1])
        except TextFault:
            return -EPERM
        return 0

    def ftrace_mod_jmp(self, ip: int, func: int) -> int:
        """Point the 5-byte jmp at ip at func."""
        try:
            old = self.text.read(ip, MCOUNT_INSN_SIZE)
        except TextFault:
            return -EFAULT
        new = ftrace_jmp_replace(ip, func)
        return 0 if old == new else self.ftrace_modify_code(ip, old, new)

    def ftrace_enable_ftrace_graph_caller(self) -> int:
        return self.ftrace_mod_jmp(self.addrs.ftrace_graph_call, self.addrs.ftrace_graph_caller)

    def ftrace_disable_ftrace_graph_caller(self) -> int:
        return self.ftrace_mod_jmp(self.addrs.ftrace_graph_call, self.addrs.ftrace_graph_return)

    def ftrace_arch_code_modify_prepare(self) -> Iterator[object]:
        """[4.8] set_kernel_text_rw(); set_all_modules_text_rw()."""
        yield from self.text.prepare()

    def ftrace_arch_code_modify_post_process(self) -> Iterator[object]:
        """[4.8] set_all_modules_text_ro(); set_kernel_text_ro()."""
        yield from self.text.post_process()
