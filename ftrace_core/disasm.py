"""Disassemble a guest function as it is in emulated memory now, with the state of its
ftrace call site: what dynamic ftrace's rewrites look like from the machine's side."""

from __future__ import annotations

from functools import partial

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from capstone import CS_ARCH_X86, CS_GRP_CALL, CS_GRP_JUMP, CS_MODE_64, Cs
from capstone.x86 import X86_OP_IMM, X86_OP_MEM, X86_REG_INVALID, X86_REG_RIP

from emu.errors import MemoryAccessError, SymbolError
from emu.kallsyms import KSym

from .arch_x86 import MCOUNT_INSN_SIZE, NOP5, call_target
from .flags import record_flag_names
from .records import DynFtrace

if TYPE_CHECKING:
    from .system import System

#: How far a size-0 text symbol (an assembly label such as ftrace_call) is shown, at most.
LABEL_EXTENT_MAX = 64


@dataclass(frozen=True)
class Instruction:
    address: int
    offset: int
    raw: bytes
    mnemonic: str
    op_str: str
    target: int | None = None  # a call or jump's immediate target
    target_name: str | None = None  # the target as %pS prints it (a function, not a label, at its start)
    data_ref: str | None = None  # a rip-relative or absolute memory operand's symbol

    @property
    def is_call(self) -> bool:
        return self.mnemonic == "call"


@dataclass(frozen=True)
class CallSite:
    """The ftrace call site at a function's start: its bytes now and the record's state.

    state is one of "nop", "call" (to a trampoline), "fentry" (still `call __fentry__`),
    "unexpected" (bytes that are neither), "unreadable", or "none" (no record: notrace)."""

    ip: int
    state: str
    raw: bytes = b""
    target: int | None = None
    record: DynFtrace | None = None
    description: str = ""


@dataclass(frozen=True)
class Disassembly:
    symbol: KSym
    size: int  # bytes shown: the symbol's size, or up to the next symbol for a size-0 label
    call_site: CallSite
    instructions: list[Instruction]
    calls: list[str]  # distinct symbolised targets of direct calls, the call site excluded
    indirect_calls: list[str]  # distinct operands of indirect calls (`call r14`)

    def format(self) -> str:
        sym = self.symbol
        mod = f" [{sym.module}]" if sym.module else ""
        size = (f"({_bytes(self.size)})" if sym.size else
                f"(size 0 in kallsyms; {_bytes(self.size)} shown, to the next symbol)")
        lines = [f"{sym.name}{mod}  {sym.addr:#x}-{sym.addr + self.size:#x}  {size}",
                 self.call_site.description]
        hex_w = max((len(i.raw.hex(" ")) for i in self.instructions), default=0)
        off_w = max((len(f"<+{i.offset:#x}>:") for i in self.instructions), default=0)
        for i in self.instructions:
            text = f"{i.mnemonic:<6} {i.op_str}"
            if i.target_name is not None:
                text += f" <{i.target_name}>"
            if i.data_ref is not None:
                text += f"  # {i.data_ref}"
            lines.append(f"  {i.address:016x} {f'<+{i.offset:#x}>:':<{off_w}}  {i.raw.hex(' '):<{hex_w}}  {text}".rstrip())
        lines.append("calls:")
        lines.extend(f"  {name}" for name in self.calls)
        lines.extend(f"  indirect: call {op}" for op in self.indirect_calls)
        if not self.calls and not self.indirect_calls:
            lines.append("  (none)")
        return "\n".join(lines) + "\n"


def disassemble(system: "System", symbol: str) -> str:
    """The listing of a kernel or module function: header, call-site state, instructions, calls."""
    return disassemble_function(system, symbol).format()


def disassemble_function(system: "System", symbol: str) -> Disassembly:
    """disassemble()'s structured form."""
    kallsyms = system.kernel.kallsyms
    sym = kallsyms.get(symbol)  # SymbolError "unknown symbol NAME"
    if not sym.is_text:
        raise SymbolError(f"{symbol} is not a function")
    size = sym.size or _label_extent(system, sym)
    try:
        code = system.read(sym.addr, size)
    except MemoryAccessError as exc:
        raise SymbolError(f"{symbol}: cannot read its text ({exc})") from None
    fmt = partial(kallsyms.format, unformed=True)  # the tool's view: a loading module is named too
    insns = _decode(system, sym, code, fmt)
    site = _call_site(system, sym, insns, fmt)
    calls: list[str] = []
    indirect: list[str] = []
    for insn in insns:
        if not insn.is_call or (insn.address == site.ip and site.state != "none"):
            continue
        if insn.target_name is not None:
            if insn.target_name not in calls:
                calls.append(insn.target_name)
        elif insn.op_str not in indirect:
            indirect.append(insn.op_str)
    return Disassembly(sym, size, site, insns, calls, indirect)


def _label_extent(system: "System", sym: KSym) -> int:
    """A size-0 text symbol is an assembly label: show it up to the next symbol, since
    kallsyms knows no end for it."""
    following = [s.addr for s in system.kernel.kallsyms if s.addr > sym.addr and s.module == sym.module]
    end = min(following, default=sym.addr + MCOUNT_INSN_SIZE)
    return max(1, min(end - sym.addr, LABEL_EXTENT_MAX))


def _decode(system: "System", sym: KSym, code: bytes, fmt: Callable[[int], str]) -> list[Instruction]:
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    md.detail = True  # operand types and groups, to find branch targets
    insns: list[Instruction] = []
    off = 0
    while off < len(code):
        decoded = False
        for ci in md.disasm(code[off:], sym.addr + off):
            target = None
            if (ci.group(CS_GRP_CALL) or ci.group(CS_GRP_JUMP)) and len(ci.operands) == 1 \
                    and ci.operands[0].type == X86_OP_IMM:
                target = ci.operands[0].imm & ((1 << 64) - 1)
            ref = _memory_ref(ci)
            hit = system.kernel.kallsyms.lookup(ref, unformed=True) if ref is not None else None
            insns.append(Instruction(ci.address, ci.address - sym.addr, bytes(ci.bytes), ci.mnemonic,
                                     ci.op_str, target, fmt(target) if target is not None else None,
                                     f"{ref:#x} <{fmt(ref)}>" if hit else None))
            off = ci.address - sym.addr + ci.size
            decoded = True
        if not decoded:
            # capstone stops at bytes it cannot decode: show one as objdump's (bad), go on.
            insns.append(Instruction(sym.addr + off, off, code[off:off + 1], "(bad)", ""))
            off += 1
    return insns


def _memory_ref(ci) -> int | None:
    """The address a rip-relative or absolute memory operand names (objdump's `# addr <sym>`),
    so loads of globals such as function_trace_op read by name."""
    for op in ci.operands:
        if op.type != X86_OP_MEM or op.mem.segment != X86_REG_INVALID or op.mem.index != X86_REG_INVALID:
            continue
        if op.mem.base == X86_REG_RIP:
            return (ci.address + ci.size + op.mem.disp) & ((1 << 64) - 1)
        if op.mem.base == X86_REG_INVALID:
            return op.mem.disp & ((1 << 64) - 1)
    return None


def _bytes(n: int) -> str:
    return f"{n} byte" if n == 1 else f"{n} bytes"


def _call_site(system: "System", sym: KSym, insns: list[Instruction], fmt: Callable[[int], str]) -> CallSite:
    ftrace = system.ftrace
    fentry = ftrace.arch.addrs.mcount
    rec = ftrace.records.lookup(sym.addr)
    dead = "; ftrace is disabled (see dmesg)" if ftrace.ftrace_disabled else ""
    if rec is None:
        first = insns[0] if insns else None
        if first is not None and first.offset == 0 and first.target == fentry:
            # Compiled for tracing, but ftrace never took the site (say after a failed init).
            return CallSite(sym.addr, "fentry", first.raw, fentry, None,
                            f"call site: call __fentry__, but ftrace has no record of it{dead}")
        return CallSite(sym.addr, "none", description="no ftrace call site (notrace)")
    try:
        raw = system.read(rec.ip, MCOUNT_INSN_SIZE)
    except MemoryAccessError as exc:
        return CallSite(rec.ip, "unreadable", record=rec,
                        description=f"call site: unreadable ({exc}){_record_note(rec)}{dead}")
    target = call_target(rec.ip, raw) if raw[0] == 0xE8 else None
    if raw == NOP5:
        state, text = "nop", f"nop ({raw.hex(' ')}), not traced{_record_note(rec)}"
    elif target == fentry:
        state, text = "fentry", f"call __fentry__ (not yet converted){_record_note(rec)}"
    elif target is not None:
        state = "call"
        text = (f"call {fmt(target)}, traced by {rec.refs} ops "
                f"(flags {record_flag_names(rec.state)})")
    else:
        state, text = "unexpected", f"unexpected bytes ({raw.hex(' ')}){_record_note(rec)}"
    return CallSite(rec.ip, state, raw, target, rec, f"call site: {text}{dead}")


def _record_note(rec: DynFtrace) -> str:
    """The record's state where the bytes alone do not tell it (a DISABLED module record,
    or counts and flags the bytes disagree with)."""
    if not rec.state and not rec.refs:
        return ""
    return f" (record: {rec.refs} refs, flags {record_flag_names(rec.state)})"
