"""Stack-trace events: trace_dump_stack() (kernel/trace/trace.c) records the return
addresses save_stack_trace() finds, and the trace prints them as trace_stack_print()
(trace_output.c) does: "<stack trace>", then " => func" a line.  The same in v4.5 and v4.8.17.

The guest is built without frame pointers, so the walk reads the stack word by word from the
traced function's return address up, as x86's walker does without them, but keeps only the
words that chain: return addresses whose call goes into the function found below them
(what a kernel with CONFIG_FRAME_POINTER, as x86-64 configs of the time have, reports).  The frames the kernel
skips (trace_dump_stack, the probe, its caller and ftrace_call, STACK_SKIP) are the
trampoline's own, which are below that first word.
"""

from __future__ import annotations

from dataclasses import dataclass

from unicorn.x86_const import UC_X86_REG_RBP

from emu.kernel import Kernel

from ..tracer import trace_comm

#: FTRACE_STACK_MAX_ENTRIES: PAGE_SIZE / sizeof(unsigned long), the per-CPU ftrace_stack.
FTRACE_STACK_MAX_ENTRIES = 4096 // 8


@dataclass(frozen=True, slots=True)
class StackEntry:
    """struct stack_entry and its header: the callers, innermost first."""

    ts: int
    cpu: int
    comm: str
    pid: int
    callers: tuple[int, ...]
    ip: int = 0  # a function event's fields, for the printers of other forms (raw, hex, JSON)
    parent_ip: int = 0


def _call_before(kernel: Kernel, addr: int) -> int | None:
    """The call instruction that ends at addr: its target for `e8 rel32`, 0 for an indirect
    call (ff /2: through a register or memory, with or without SIB and displacement), None
    when addr does not follow a call."""
    try:
        before = kernel.machine.read(addr - 7, 7)
    except Exception:
        return None
    if before[2] == 0xE8:  # call rel32
        return (addr + int.from_bytes(before[3:7], "little", signed=True)) & ((1 << 64) - 1)
    for length in (2, 3, 4, 6, 7):
        op, modrm = before[7 - length], before[8 - length]
        if op != 0xFF or (modrm >> 3) & 7 != 2:
            continue
        mod, rm = modrm >> 6, modrm & 7
        sib = 1 if mod != 3 and rm == 4 else 0
        disp = {0: 4 if rm == 5 else 0, 1: 1, 2: 4, 3: 0}[mod]
        if mod == 0 and sib and before[9 - length] & 7 == 5:
            disp = 4  # SIB with no base: disp32
        if 2 + sib + disp == length:
            return 0
    return None


def save_stack_trace(kernel: Kernel, cpu, max_entries: int = FTRACE_STACK_MAX_ENTRIES) -> list[int]:
    """The return addresses on the stack of the function being traced, innermost first,
    read at one of ftrace_caller's callbacks (rbp is ftrace_caller's frame: 8(%rbp) is the
    return into the traced function).  A word counts when it follows a call into the
    function of the frame below (or an indirect call), which leaves out what earlier, deeper
    calls left in the frames' unused slots: what a frame-pointer walk would give."""
    rbp = kernel.machine.uc.reg_read(UC_X86_REG_RBP)
    top = cpu.stack_top
    if not cpu.stack_base <= rbp < top:
        return []
    kallsyms = kernel.kallsyms
    callers: list[int] = []
    callee: int | None = None  # the start of the function the last caller is in
    raw = kernel.machine.read(rbp + 8, top - (rbp + 8))
    for off in range(0, len(raw) - 7, 8):
        addr = int.from_bytes(raw[off:off + 8], "little")
        if not kallsyms.is_text(addr):
            continue
        target = _call_before(kernel, addr)
        if target is None or (callee is not None and target not in (0, callee)):
            continue
        hit = kallsyms.lookup(addr)
        callee = hit[0].addr if hit else None
        callers.append(addr)
        if len(callers) == max_entries:
            break
    return callers


def trace_dump_stack(system, cpu) -> None:
    """trace_dump_stack(STACK_SKIP): a stack-trace event into the ring buffer, if it is
    recording (ring_buffer_lock_reserve() finds it off otherwise)."""
    if not system.tracer.tracing_on:
        return
    buffer = system.buffer
    buffer.pull()  # the events recorded so far come first
    buffer.record(StackEntry(buffer.now(cpu), cpu.index, trace_comm(cpu.task), cpu.task.pid,
                             tuple(save_stack_trace(system.kernel, cpu))))


def format_stack(callers: tuple[int, ...], ip_sym) -> str:
    """trace_stack_print(): the event's text after its context."""
    return "<stack trace>\n" + "".join(f" => {ip_sym(ip)}\n" for ip in callers)
