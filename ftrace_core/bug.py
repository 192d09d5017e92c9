"""ftrace_bug()'s report, line for line as v4.5-v4.8.17 (and the seed's tree) print it (the printk calls, in order)."""

from __future__ import annotations

from typing import Callable

from .flags import EFAULT, EINVAL, EPERM, FTRACE_FL_REGS, FTRACE_FL_TRAMP_EN, BugType, ftrace_rec_count
from .records import DynFtrace

BUG_TYPE_LINES = {
    BugType.INIT: "Initializing ftrace call sites\n",
    BugType.NOP: "Setting ftrace call site to NOP\n",
    BugType.CALL: "Setting ftrace call site to call ftrace function\n",
    BugType.UPDATE: "Updating ftrace call site to call a different ftrace function\n",
}


def print_ip_sym(ip: int, format_ip: Callable[[int], str]) -> str:
    """print_ip_sym(): `[<address>] sym+0xoff/0xsize [mod]`."""
    return f"[<{ip:016x}>] {format_ip(ip)}\n"


def print_ip_ins(prefix: str, code: bytes) -> str:
    return prefix + ":".join(f"{b:02x}" for b in code)


def format_ftrace_bug(
    failed: int,
    rec: DynFtrace | None,
    bug_type: BugType,
    expected: bytes | None,
    read_site: Callable[[int], bytes | None],
    format_ip: Callable[[int], str],
    get_addr_curr: Callable[[DynFtrace], int],
) -> list[str]:
    ip = rec.ip if rec else 0
    out: list[str] = []
    if failed == -EFAULT:
        out.append("ftrace faulted on modifying " + print_ip_sym(ip, format_ip))
    elif failed == -EINVAL:
        out.append("ftrace failed to modify " + print_ip_sym(ip, format_ip))
        actual = read_site(ip)
        out.append(print_ip_ins(" actual:   ", actual) if actual is not None else " actual:   [FAULT]")
        out.append("\n")
        if expected:
            out.append(print_ip_ins(" expected: ", expected))
            out.append("\n")
    elif failed == -EPERM:
        out.append("ftrace faulted on writing " + print_ip_sym(ip, format_ip))
    else:
        out.append("ftrace faulted on unknown error " + print_ip_sym(ip, format_ip))
    if bug_type in BUG_TYPE_LINES:
        out.append(BUG_TYPE_LINES[bug_type])
    if rec is not None:
        out.append(f"ftrace record flags: {rec.flags:x}\n")
        out.append(f" ({ftrace_rec_count(rec.flags)}){' R' if rec.flags & FTRACE_FL_REGS else '  '}")
        if rec.flags & FTRACE_FL_TRAMP_EN:
            out.append("\ttramp: ERROR!")
        out.append(f"\n expected tramp: {get_addr_curr(rec):x}\n")
    return out
