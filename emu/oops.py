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
    rip_sym: str,
    rsp: int,
    kind: str,
    address: int | None,
    protection: bool,
    trap: int | None,
    backtrace: Sequence[str],
    regs: dict[str, int],
    stack: tuple[int, int] | None = None,
    uname: str = "4.8.0-ftrace-emu",
) -> str:
    """Render the report: what happened, the CPU and task, RIP symbolised, registers, trace.
    `stack` is the task's stack when the fault hit its guard page."""
    lines = []
    if stack is not None:
        lines.append(f"BUG: stack guard page was hit at {address or 0:016x} (stack is {stack[0]:016x}..{stack[1]:016x})")
        lines.append(f"kernel stack overflow (page fault): {pf_error_code(kind, protection):04x} [#1] SMP")
    elif trap is None or trap == X86_TRAP_PF:
        code = pf_error_code(kind, protection)
        addr = address or 0
        if addr < 0x1000 and not protection:
            lines.append(f"BUG: kernel NULL pointer dereference, address: {addr:016x}")
        else:
            lines.append(f"BUG: unable to handle page fault for address: {addr:016x}")
        mode = "instruction fetch" if kind == "fetch" else f"{kind} access"
        lines.append(f"#PF: supervisor {mode} in kernel mode")
        why = "permissions violation" if protection else "not-present page"
        lines.append(f"#PF: error_code(0x{code:04x}) - {why}")
        lines.append(f"Oops: {code:04x} [#1] SMP")
    else:
        lines.append(f"{_TRAP_NAMES.get(trap, f'trap {trap}')}: 0000 [#1] SMP")
    lines.append(f"CPU: {cpu} PID: {pid} Comm: {comm} Not tainted {uname} #1")
    lines.append(f"RIP: 0010:{rip_sym}")
    lines.append(f"RSP: 0018:{rsp:016x} EFLAGS: {regs.get('rflags', 0):08x}")
    names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
    for i in range(0, len(names), 3):
        lines.append(" ".join(f"{n.upper():>3}: {regs.get(n, 0):016x}" for n in names[i:i + 3]))
    lines.append("Call Trace:")
    lines.append(" <TASK>")
    lines.extend(f" {frame}" for frame in backtrace)
    lines.append(" </TASK>")
    lines.append("---[ end trace 0000000000000000 ]---")
    return "\n".join(lines)


def scan_return_addresses(words: Sequence[int], is_call_return: Callable[[int], bool]) -> list[int]:
    """Stack words that are return addresses (the byte before them ends a call into text)."""
    return [w for w in words if is_call_return(w)]
