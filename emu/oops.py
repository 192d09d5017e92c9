"""Kernel-oops-like reports for guest faults, in the shape of the x86 kernel's."""

from __future__ import annotations

from typing import Callable, Sequence

# x86 exception vectors that matter here.
X86_TRAP_DE = 0
X86_TRAP_BP = 3
X86_TRAP_UD = 6
X86_TRAP_GP = 13
X86_TRAP_PF = 14

_TRAP_NAMES = {
    X86_TRAP_DE: "divide error",
    X86_TRAP_BP: "int3",
    X86_TRAP_UD: "invalid opcode",
    X86_TRAP_GP: "general protection fault",
}


def pf_error_code(kind: str, protection: bool) -> int:
    """The #PF error code: bit 0 present/protection, bit 1 write, bit 4 instruction fetch."""
    return (1 if protection else 0) | (2 if kind == "write" else 0) | (0x10 if kind == "fetch" else 0)


def format_oops(
    *,
    cpu: int,
    comm: str,
    pid: int,
    rip: int,
    rip_sym: str,
    rsp: int,
    kind: str,
    address: int | None,
    protection: bool,
    trap: int | None,
    backtrace: Sequence[tuple[int, str]],
    regs: dict[str, int],
    stack_words: Sequence[int] = (),
    code: tuple[bytes, bytes] | None = None,
    modules: Sequence[str] = (),
    stack: tuple[int, int] | None = None,
    uname: str,
) -> str:
    """The report as x86-64 prints it in v4.4-v4.8 (arch/x86/mm/fault.c show_fault_oops,
    arch/x86/kernel/dumpstack.c __die, process_64.c __show_regs, dumpstack_64.c
    show_regs): the first line says what happened, `IP:` where, then the oops line, modules,
    CPU and task, registers, the stack, the call trace (a scan of the stack for return
    addresses, as without frame pointers), the code bytes around RIP (the faulting one in
    <>), and the closing lines.  `backtrace` is (address, %pS) pairs; `code` is (bytes
    before RIP, bytes from RIP); `stack` is the task's stack when the fault hit its guard
    page (a machine with guard pages, as kernels with vmapped stacks have from v4.9)."""
    lines = []
    code_word = 0
    if stack is not None:
        lines.append(f"BUG: stack guard page was hit at {address or 0:016x} (stack is {stack[0]:016x}..{stack[1]:016x})")
        code_word = pf_error_code(kind, protection)
        lines.append(f"kernel stack overflow (page fault): {code_word:04x} [#1] SMP")
    elif trap is None or trap == X86_TRAP_PF:
        code_word = pf_error_code(kind, protection)
        addr = address or 0
        if kind == "fetch" and protection:
            lines.append("kernel tried to execute NX-protected page - exploit attempt? (uid: 0)")
        what = "NULL pointer dereference" if addr < 0x1000 else "paging request"
        lines.append(f"BUG: unable to handle kernel {what} at {addr:016x}")
        lines.append(f"IP: [<{rip:016x}>] {rip_sym}")
        lines.append(f"Oops: {code_word:04x} [#1] SMP")
    else:
        lines.append(f"{_TRAP_NAMES.get(trap, f'trap {trap}')}: 0000 [#1] SMP")
    lines.append("Modules linked in:" + "".join(f" {m}" for m in modules))
    lines.append(f"CPU: {cpu} PID: {pid} Comm: {comm} Not tainted {uname} #1")
    lines.append(f"RIP: 0010:[<{rip:016x}>]  [<{rip:016x}>] {rip_sym}")
    lines.append(f"RSP: 0018:{rsp:016x}  EFLAGS: {regs.get('rflags', 0):08x}")
    names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
    for i in range(0, len(names), 3):
        lines.append(" ".join(f"{_REG_LABELS.get(n, n.upper())}: {regs.get(n, 0):016x}" for n in names[i:i + 3]))
    if stack_words:
        lines.append("Stack:")
        for i in range(0, min(len(stack_words), 12), 4):
            lines.append(" " + " ".join(f"{w:016x}" for w in stack_words[i:i + 4]))
    lines.append("Call Trace:")
    lines.extend(f" [<{addr:016x}>] {frame}" for addr, frame in backtrace)
    if code is not None:
        before, after = code
        lines.append("Code: " + " ".join([f"{b:02x}" for b in before] + [f"<{after[0]:02x}>"] * bool(after)
                                         + [f"{b:02x}" for b in after[1:]]))
    lines.append(f"RIP  [<{rip:016x}>] {rip_sym}")
    lines.append(f" RSP <{rsp:016x}>")
    if trap is None or trap == X86_TRAP_PF:
        lines.append(f"CR2: {address or 0:016x}")
    lines.append("---[ end trace 0000000000000000 ]---")
    return "\n".join(lines)


_REG_LABELS = {"r8": "R08", "r9": "R09"}


def notify_die(notifiers: Sequence[Callable[[object], str]], cpu: object, report: str) -> str:
    """notify_die(DIE_OOPS, ...) as __die() calls it (arch/x86/kernel/dumpstack.c, v4.4-v4.8):
    after the "Oops: ... [#1] SMP" line and before print_modules(), each notifier runs on the
    oopsing CPU; what they print is placed there in the report."""
    printed = "".join(fn(cpu) for fn in list(notifiers))
    if not printed:
        return report
    lines = report.split("\n")
    at = next((i for i, line in enumerate(lines) if "[#1] SMP" in line), 0)
    return "\n".join(lines[:at + 1] + printed.rstrip("\n").split("\n") + lines[at + 1:])


def scan_return_addresses(words: Sequence[int], is_call_return: Callable[[int], bool]) -> list[int]:
    """Stack words that are return addresses (the byte before them ends a call into text)."""
    return [w for w in words if is_call_return(w)]
