"""Port of arch/x86/kernel/ftrace.c (identical for these paths from v4.5 to v4.8.17, and in
the seed's tree): call-site encodings and how a site is rewritten.

ftrace_modify_code_direct() reads the 5 bytes back, compares them with what the core believes
is there (-EINVAL if not) and writes the new ones through the text port (-EPERM if the store
faults).  x86 uses it only where nothing else runs the code: boot, module load
(ftrace_make_nop from MCOUNT_ADDR) and ftrace_make_call (module enable).  Live sites are
rewritten with breakpoints (ftrace_core.breakpoints); ftrace_make_nop() for any other address
and ftrace_modify_call() "should never be called" on x86: they WARN and return -EINVAL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

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
    def __init__(self, text: TextPort, addrs: Addresses, warn: Callable[[str], None] = lambda where: None,
                 bug: Callable[[str, str], None] | None = None):
        self.text = text
        self.addrs = addrs
        self.warn = warn  # WARN(): where x86 warns about a call that should never happen
        self.bug = bug  # BUG(): a breakpoint that cannot be taken out again
        #: The trampoline site being rewritten now: ftrace_int3_handler() accepts an int3 there.
        self.ftrace_update_func = 0
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
        """ftrace_make_nop(): only the boot/module-load conversion from MCOUNT_ADDR is direct;
        "Normal cases use add_brk_on_nop": anything else WARNs and fails."""
        if addr == self.addrs.mcount:
            return self.ftrace_modify_code_direct(ip, *self.site_bytes(ip, UpdateAction.MAKE_NOP, 0, addr))
        self.ftrace_expected = None
        self.warn("ftrace_make_nop")  # WARN_ONCE(1, "invalid use of ftrace_make_nop")
        return -EINVAL

    def ftrace_make_call(self, ip: int, addr: int) -> int:
        """ftrace_make_call(): the nop at ip becomes a call to addr ("Should only be called
        when module is loaded"), directly."""
        return self.ftrace_modify_code_direct(ip, *self.site_bytes(ip, UpdateAction.MAKE_CALL, addr, 0))

    def ftrace_modify_call(self, ip: int, old_addr: int, addr: int) -> int:
        """ftrace_modify_call(): "Should never be called" on x86: WARN_ON(1), -EINVAL."""
        self.warn("ftrace_modify_call")
        self.ftrace_expected = None
        return -EINVAL

    # The generic arch's versions (no breakpoints: every rewrite is direct), used only by the
    # "direct" patching mode, the kernel's generic ftrace_replace_code on such an arch.
    def generic_make_nop(self, ip: int, addr: int) -> int:
        return self.ftrace_modify_code_direct(ip, *self.site_bytes(ip, UpdateAction.MAKE_NOP, 0, addr))

    def generic_modify_call(self, ip: int, old_addr: int, addr: int) -> int:
        return self.ftrace_modify_code_direct(ip, *self.site_bytes(ip, UpdateAction.MODIFY_CALL, addr, old_addr))

    def ftrace_update_ftrace_func(self, func: int) -> int:
        """ftrace_update_ftrace_func(): point the trampoline's ftrace_call site at func (there
        is no separate ftrace_regs_call on this machine)."""
        ip = self.addrs.ftrace_call
        return self.update_ftrace_func(ip, ftrace_call_replace(ip, func))

    def update_ftrace_func(self, ip: int, new: bytes) -> int:
        """update_ftrace_func(): whatever the site holds now becomes new, with breakpoints;
        ftrace_update_func names the site for ftrace_int3_handler()."""
        try:
            old = self.text.read(ip, MCOUNT_INSN_SIZE)
        except TextFault:
            return -EFAULT
        self.ftrace_update_func = ip
        return self.ftrace_modify_code(ip, old, new)

    def ftrace_modify_code(self, ip: int, old: bytes, new: bytes) -> int:
        """ftrace_modify_code(): add_break(), the four bytes after it, then the first byte
        (run_sync between); a site left with an int3 it cannot lose is a BUG()."""
        if not self.breakpoints:
            return self.ftrace_modify_code_direct(ip, old, new)
        ret = self._add_break(ip, old)
        if ret:
            return ret
        try:
            self.text.write(ip + 1, new[1:])
        except TextFault:
            # fail_update: "Also here the system could not work with the breakpoint"
            try:
                self.text.write(ip, old[:1])
            except TextFault:
                self._bug("ftrace_modify_code", ip)
            return -EPERM
        try:
            self.text.write(ip, new[:1])
        except TextFault:
            self._bug("ftrace_modify_code", ip)  # BUG_ON(ret)
            return -EPERM
        return 0

    def _add_break(self, ip: int, old: bytes) -> int:
        """add_break(): -EFAULT if unreadable, -EINVAL if not old, else the int3's write."""
        try:
            replaced = self.text.read(ip, MCOUNT_INSN_SIZE)
        except TextFault:
            return -EFAULT
        self.ftrace_expected = old
        if replaced != old:
            return -EINVAL
        try:
            self.text.write(ip, b"\xcc")
        except TextFault:
            return -EPERM
        return 0

    def _bug(self, where: str, ip: int) -> None:
        if self.bug is not None:
            self.bug(f"arch/x86/kernel/ftrace.c:{where}", f"the int3 at {ip:#x} cannot be taken out")

    def ftrace_mod_jmp(self, ip: int, func: int) -> int:
        """ftrace_mod_jmp(): point the 5-byte jmp at ip at func."""
        return self.update_ftrace_func(ip, ftrace_jmp_replace(ip, func))

    def ftrace_enable_ftrace_graph_caller(self) -> int:
        return self.ftrace_mod_jmp(self.addrs.ftrace_graph_call, self.addrs.ftrace_graph_caller)

    def ftrace_disable_ftrace_graph_caller(self) -> int:
        return self.ftrace_mod_jmp(self.addrs.ftrace_graph_call, self.addrs.ftrace_graph_return)

    def ftrace_arch_code_modify_prepare(self) -> Iterator[object]:
        """set_kernel_text_rw(); set_all_modules_text_rw() (v4.4-v4.8.17)."""
        yield from self.text.prepare()

    def ftrace_arch_code_modify_post_process(self) -> Iterator[object]:
        """set_all_modules_text_ro(); set_kernel_text_ro() (v4.4-v4.8.17)."""
        yield from self.text.post_process()
