"""Emulated CPUs: a register context, a stack with guard pages, a per-CPU area and the task
running on it; and calling guest code on a CPU in quanta of instructions.

All CPUs share the one Unicorn instance (so a store by one invalidates translated code for
all); a CPU's registers live in its saved context while another CPU runs.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generator, Iterable, Protocol

from unicorn import UcError
from unicorn import unicorn_const as uc_const
from unicorn.x86_const import (
    UC_X86_REG_GS_BASE, UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15, UC_X86_REG_RAX,
    UC_X86_REG_RBP, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RDI, UC_X86_REG_RDX,
    UC_X86_REG_RFLAGS, UC_X86_REG_RIP, UC_X86_REG_RSI, UC_X86_REG_RSP,
)

from .errors import GuestFault
from .machine import PAGE_SIZE, Machine, access_is_protection, access_kind
from .sched import run_to_completion
from .oops import X86_TRAP_PF, X86_TRAP_UD, format_oops, notify_die

if TYPE_CHECKING:
    from unicorn.unicorn import UcContext

ARG_REGS = (UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX, UC_X86_REG_RCX, UC_X86_REG_R8, UC_X86_REG_R9)
_REG_NAMES = {
    "rax": UC_X86_REG_RAX, "rbx": UC_X86_REG_RBX, "rcx": UC_X86_REG_RCX, "rdx": UC_X86_REG_RDX,
    "rsi": UC_X86_REG_RSI, "rdi": UC_X86_REG_RDI, "rbp": UC_X86_REG_RBP, "r8": UC_X86_REG_R8,
    "r9": UC_X86_REG_R9, "r10": UC_X86_REG_R10, "r11": UC_X86_REG_R11, "r12": UC_X86_REG_R12,
    "r13": UC_X86_REG_R13, "r14": UC_X86_REG_R14, "r15": UC_X86_REG_R15, "rflags": UC_X86_REG_RFLAGS,
}
MASK64 = (1 << 64) - 1

#: Layout of struct percpu_area (guest/include/kernel.h).
PERCPU_SELF, PERCPU_CPU, PERCPU_PID, PERCPU_COMM, PERCPU_CLOCK, PERCPU_LOCK_DEPTH = 0, 8, 12, 16, 32, 40
#: Slices a CPU may keep running inside a spinlocked section before it counts as stuck.
SOFT_LOCKUP_SLICES = 20000
#: Instructions between two progress reports of a long call (Cpu.call's progress).
PROGRESS_INSNS = 5_000_000
# emu_start's errors for a memory access the MMU refused (Machine.explain_fault tells which).
_MEMORY_ERRORS = frozenset((
    uc_const.UC_ERR_READ_UNMAPPED, uc_const.UC_ERR_WRITE_UNMAPPED, uc_const.UC_ERR_FETCH_UNMAPPED,
    uc_const.UC_ERR_READ_PROT, uc_const.UC_ERR_WRITE_PROT, uc_const.UC_ERR_FETCH_PROT,
    uc_const.UC_ERR_READ_UNALIGNED, uc_const.UC_ERR_WRITE_UNALIGNED, uc_const.UC_ERR_FETCH_UNALIGNED))


@dataclass
class Task:
    """What runs on a CPU, as `current` shows it: comm and pid."""

    comm: str
    pid: int

    def __str__(self) -> str:
        return f"{self.comm}-{self.pid}"


@dataclass(frozen=True)
class Quantum:
    """Yielded by a guest call between quanta: the CPU may be switched here."""

    cpu: int
    rip: int


class Symbolizer(Protocol):
    """What a CPU needs to name code in an oops (emu.kallsyms.Kallsyms provides it)."""

    def format(self, addr: int) -> str: ...

    def is_text(self, addr: int) -> bool: ...

    def modules_linked_in(self) -> list[str]: ...


class Cpu:
    def __init__(self, machine: Machine, index: int, stack_base: int, stack_size: int,
                 percpu: int, trap: int, symbolizer: Symbolizer):
        self.machine = machine
        self.index = index
        self.uname = "4.8.0-ftrace-emu"  # the kernel version oopses print (Kernel sets it)
        self.stack_base = stack_base
        self.stack_top = stack_base + stack_size
        self.percpu = percpu
        self.trap = trap
        self.symbolizer = symbolizer
        self.task = Task(f"swapper/{index}", 0)
        #: The sched_switch tracepoint's probes: probe(cpu, prev, next) at each set_task().
        self.switch_probes: list[Callable[["Cpu", Task, Task], None]] = []
        # The clock (struct percpu_area.clock_ns, virtual ns): host memory the instruction
        # counter (emu.clock) moves while this CPU runs, read and written here directly.
        self._clock = ctypes.c_uint64.from_address(machine.host_address(percpu + PERCPU_CLOCK))
        self.insns = 0
        # Where the running slice resumed a call the previous slice stopped in (None when it
        # starts a call).  A block hook at that address fires twice for one execution: once
        # before the slice that stopped there ended, once as the resuming slice begins.
        self.resume_rip: int | None = None
        self._ctx: UcContext | None = None
        self._depth = 0
        # What a call sets: the stack pointer and the arguments, and for an outermost call
        # the per-CPU base too (emu.machine.Registers: one call into Unicorn each).
        self._write_nested = machine.regs.writer((UC_X86_REG_RSP, *ARG_REGS))
        self._write_outer = machine.regs.writer((UC_X86_REG_RSP, *ARG_REGS, UC_X86_REG_GS_BASE))
        self._publish_percpu()

    # -- per-CPU state visible to the guest ------------------------------------------------
    def set_task(self, task: Task) -> None:
        """Switch this CPU to task (the context switch), telling sched_switch's probes."""
        prev, self.task = self.task, task
        self._publish_percpu()
        for probe in list(self.switch_probes):
            probe(self, prev, task)

    @property
    def clock_ns(self) -> int:
        """This CPU's clock: the instructions it has run at 1 ns each (emu.clock), plus what
        the trace recorders charged."""
        return self._clock.value

    def advance_clock(self, ns: int) -> None:
        """Charge this CPU ns of virtual time on top of its instructions (a recorder's cost)."""
        self._clock.value += ns

    def _publish_percpu(self) -> None:
        comm = self.task.comm.encode()[:15].ljust(16, b"\0")
        area = (self.percpu.to_bytes(8, "little") + self.index.to_bytes(4, "little")
                + (self.task.pid & 0xFFFFFFFF).to_bytes(4, "little") + comm)
        self.machine.write(self.percpu, area)

    @property
    def busy(self) -> bool:
        return self._depth > 0

    # -- calling guest code --------------------------------------------------------------
    def call(self, addr: int, *args: int, quantum: int | None = None, budget: int | None = None,
             progress: Callable[[int], None] | None = None, fixup: bool = False) -> Generator[Quantum, None, int]:
        """Run the guest function at addr with integer args until it returns; yields a
        Quantum every `quantum` instructions (never, when quantum is None).  Returns rax
        (as a signed 64-bit value).  A fault raises GuestFault and leaves the CPU as it was
        before the call.  With a budget, a call that has not returned after that many
        instructions is stopped and reported as a soft lockup.  With progress, a long call
        is paused every PROGRESS_INSNS instructions to tell it how many have run; the pause
        changes nothing the call does (emu.clock stops it where it resumes exactly).  With
        fixup, a fault is one the kernel's exception table fixes up (probe_kernel_write's
        stores): the GuestFault still says what happened, but it is no oops, so the die
        notifiers (machine.die_notifiers) are not called."""
        if len(args) > len(ARG_REGS):
            raise ValueError(f"at most {len(ARG_REGS)} integer arguments")
        uc, regs = self.machine.uc, self.machine.regs
        outer = self._ctx
        values = [arg & MASK64 for arg in args] + [0] * (len(ARG_REGS) - len(args))  # none left over
        if outer is not None:
            uc.context_restore(outer)
            rsp = ((regs.read(UC_X86_REG_RSP) - 512) & ~0xF) - 8
            write = self._write_nested
        else:
            rsp = self.stack_top - 64 - 8
            values.append(self.percpu)
            write = self._write_outer
        self.machine.write(rsp, self.trap.to_bytes(8, "little"))
        write([rsp] + values)
        ctx = uc.context_save()
        rip = addr
        if self.machine.tracker is not None:
            self.machine.tracker.guest(addr)
        self._depth += 1
        lock_depth = self.lock_depth()
        stuck = 0
        spent = 0
        first = True
        clock = self.machine.clock
        try:
            while True:
                # The budget and the progress pauses are counted by emu.clock's block hook,
                # which costs little; only a quantum needs Unicorn's per-instruction count.
                limit = None if budget is None else budget - spent
                if progress is not None:
                    limit = PROGRESS_INSNS if limit is None else min(limit, PROGRESS_INSNS)
                uc.context_restore(ctx)
                self.machine.last_interrupt = None
                previous, self.machine.running_cpu = self.machine.running_cpu, self
                self.resume_rip, first = (None if first else rip), False
                clock.start(ctypes.addressof(self._clock), limit)
                try:
                    self.machine.emu_start(rip, self.trap, count=quantum or 0)
                    error = None
                except UcError as exc:
                    error = exc
                finally:
                    clock.stop(regs.read(UC_X86_REG_RIP))
                    self.machine.running_cpu = previous
                    if previous is not None:  # a nested call's CPU goes on counting
                        clock.start(ctypes.addressof(previous._clock))
                ran, paused = clock.ran, clock.reached_limit
                spent += ran
                self.insns += ran
                pending = self.machine.hooks.take_pending()
                if pending is not None:
                    raise pending
                rip = regs.read(UC_X86_REG_RIP)
                if error is not None or self.machine.last_interrupt is not None:
                    self._set_lock_depth(lock_depth)  # the oops ends this call's sections
                    raise self._fault(error, rip, oops=not fixup)
                ctx = uc.context_save()
                self._ctx = ctx
                if rip == self.trap:
                    rax = regs.read(UC_X86_REG_RAX)
                    return rax - (1 << 64) if rax >> 63 else rax
                if budget is not None and spent >= budget:
                    self._set_lock_depth(lock_depth)
                    raise self._soft_lockup(rip, f"did not return within {budget} instructions")
                if paused or not quantum:
                    if progress is not None:
                        progress(spent)
                    continue  # a pause for the budget or the progress: not a switch point
                if self.lock_depth():
                    # Inside a spinlocked section: no switch here (see kernel.h).
                    stuck += 1
                    if stuck > SOFT_LOCKUP_SLICES:
                        self._set_lock_depth(lock_depth)
                        raise self._soft_lockup(rip, f"stuck in a spinlocked section for {SOFT_LOCKUP_SLICES} slices")
                    continue
                stuck = 0
                yield Quantum(self.index, rip)
        finally:
            self._depth -= 1
            self._ctx = outer
            if outer is not None:
                uc.context_restore(outer)

    def run(self, addr: int, *args: int, budget: int | None = None, fixup: bool = False) -> int:
        """Call guest code to completion, with no switching."""
        return run_to_completion(self.call(addr, *args, budget=budget, fixup=fixup))

    def lock_depth(self) -> int:
        """Spinlocks the guest holds on this CPU (struct percpu_area.lock_depth)."""
        return int.from_bytes(self.machine.read(self.percpu + PERCPU_LOCK_DEPTH, 4), "little")

    def _set_lock_depth(self, depth: int) -> None:
        self.machine.write(self.percpu + PERCPU_LOCK_DEPTH, depth.to_bytes(4, "little"))

    # -- faults -------------------------------------------------------------------------------
    def _soft_lockup(self, rip: int, why: str) -> GuestFault:
        rsp = self.machine.uc.reg_read(UC_X86_REG_RSP)
        # kernel/watchdog.c (v4.4-v4.8) says how long in seconds; the budget here is counted
        # in instructions, so the line says that instead.
        sym = self.symbolizer.format(rip)
        report = "\n".join([
            f"NMI watchdog: BUG: soft lockup - CPU#{self.index} {why}! [{self.task.comm}:{self.task.pid}]",
            "Modules linked in:" + "".join(f" {m}" for m in self.symbolizer.modules_linked_in()),
            f"CPU: {self.index} PID: {self.task.pid} Comm: {self.task.comm} Not tainted {self.uname} #1",
            f"RIP: 0010:[<{rip:016x}>]  [<{rip:016x}>] {sym}",
            "Call Trace:", *(f" [<{a:016x}>] {f}" for a, f in self._backtrace(rsp))])
        return GuestFault(report, cpu=self.index, rip=rip, address=None, kind="soft lockup")

    def _fault(self, error: UcError | None, rip: int, oops: bool = True) -> GuestFault:
        uc = self.machine.uc
        trap = self.machine.last_interrupt
        mem = self.machine.explain_fault() if error is not None and error.errno in _MEMORY_ERRORS else None
        regs = {name: uc.reg_read(reg) for name, reg in _REG_NAMES.items()}
        rsp = uc.reg_read(UC_X86_REG_RSP)
        if mem is not None:
            kind, address, protection, trap = access_kind(mem.access), mem.address, access_is_protection(mem.access), X86_TRAP_PF
        elif error is not None and error.errno == uc_const.UC_ERR_INSN_INVALID:
            kind, address, protection, trap = "invalid opcode", None, False, X86_TRAP_UD
        else:
            kind, address, protection = (f"trap {trap}" if trap is not None else str(error)), None, False
        guard = address is not None and self.stack_base - PAGE_SIZE <= address < self.stack_base
        report = format_oops(
            cpu=self.index, comm=self.task.comm, pid=self.task.pid, rip=rip,
            rip_sym=self.symbolizer.format(rip), rsp=rsp, kind=kind, address=address,
            protection=protection, trap=trap, backtrace=self._backtrace(rsp), regs=regs,
            stack_words=list(self._stack_words(rsp))[:12], code=self._code_around(rip),
            modules=self.symbolizer.modules_linked_in(),
            stack=(self.stack_base, self.stack_top) if guard else None, uname=self.uname)
        if oops:
            report = notify_die(self.machine.die_notifiers, self, report)
        return GuestFault(report, cpu=self.index, rip=rip, address=address, kind=kind, regs=regs)

    def _backtrace(self, rsp: int, limit: int = 32) -> list[tuple[int, str]]:
        frames = []
        for word in self._stack_words(rsp):
            if word == self.trap:
                break
            if self._is_return_address(word):
                frames.append((word, self.symbolizer.format(word)))
                if len(frames) >= limit:
                    break
        return frames

    def _code_around(self, rip: int) -> tuple[bytes, bytes] | None:
        """show_regs()'s "Code:": 43 bytes before RIP and 21 from it, as far as readable."""
        for before in (43, 16, 0):
            try:
                return self.machine.read(rip - before, before), self.machine.read(rip, 21)
            except Exception:
                continue
        return None

    def _stack_words(self, rsp: int) -> Iterable[int]:
        if not (self.stack_base - PAGE_SIZE <= rsp < self.stack_top):
            return []
        rsp = max(rsp, self.stack_base)  # an overflow leaves rsp in the guard page
        data = self.machine.read(rsp, self.stack_top - rsp)
        return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data) - 7, 8)]

    def _is_return_address(self, addr: int) -> bool:
        if not self.symbolizer.is_text(addr):
            return False
        try:
            before = self.machine.read(addr - 5, 5)
        except Exception:
            return False
        return before[0] == 0xE8 or before[3:4] == b"\xff" or before[1:2] == b"\xff"
