"""Booting the guest kernel image: map its segments with their protections, set up the CPUs,
kallsyms, the exported symbols, the text-write path and the module loader, then run
start_kernel.  The result, a Kernel, is the machine everything above emu drives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import guest

from .cpu import ARG_REGS, Cpu, Task
from .elf import KernelImageFile, read_kernel_image
from .dwarf import Prototype, prototypes_in
from .errors import BadCall, ElfError, SymbolError
from .kallsyms import Kallsyms, KSym
from .machine import PAGE_SIZE, Machine, MapEntry, Perm, page_align_down, page_align_up
from .modules import INIT_BUDGET, ModuleLoader
from .sched import run_to_completion
from .textpoke import TextPoker

KERNEL_BASE = 0xFFFFFFFF81000000
STACKS_BASE = 0xFFFFC90000000000  # vmalloc area, as the kernel's own stacks
STACK_SIZE = 0x10000  # 64 KiB, with an unmapped guard page below and above
PERCPU_BASE = 0xFFFF888000000000  # direct-map area
PERCPU_SIZE = 0x10000
PERCPU_ARGS = 0x1000  # host-staged arguments (strings for printk, ...)
PERCPU_STAGING = 0x4000  # the text-write path's request vector and bytes
NR_CPUS = 2

_SEGMENT_PERMS = {5: Perm.RX, 4: Perm.R, 6: Perm.RW, 7: Perm.RWX}  # PF_R=4 PF_W=2 PF_X=1


@dataclass(frozen=True)
class Segment:
    name: str
    start: int
    end: int
    perms: Perm


#: Instructions any call into the guest (a scenario's `call`, trace --run, the shell, the
#: API) may run before it is reported as a soft lockup: the same as a module's init.
CALL_BUDGET = INIT_BUDGET


class Kernel:
    """A booted guest kernel."""

    def __init__(self, image_path: str | Path = guest.VMLINUX, nr_cpus: int = NR_CPUS,
                 late_init: Sequence[Callable[["Kernel"], None]] = (), uname: str | None = None,
                 banner: str | None = None, cmdline: str = "console=ttyS0"):
        """Boot: map the image writable (as early boot has it), write the banner (the line
        start_kernel prints first) and the command line into the image, run start_kernel,
        then each late_init callable (where ftrace_init runs), then mark_rodata_ro()."""
        self.image_path = str(image_path)
        self.image: KernelImageFile = read_kernel_image(image_path)
        self.machine = Machine()
        self.kallsyms = Kallsyms()
        self.segments: list[Segment] = []
        self._map_image()
        self._load_symbols()
        self.exports = self._read_ksymtab()
        trap = self.symbol("guest_return_trap")
        self.cpus = [self._make_cpu(i, trap) for i in range(nr_cpus)]
        #: The CPU host-side kernel code (ftrace, the loader) is running on now; the
        #: scheduler sets it for each step of a task.
        self.current_cpu = 0
        self.text = TextPoker(self.machine, self.symbol("ftrace_text_poke_batch"),
                              {c.index: (c.percpu + PERCPU_STAGING, PERCPU_SIZE - PERCPU_STAGING) for c in self.cpus})
        self.modules = ModuleLoader(self.machine, self.kallsyms, self.exports, log=self.printk)
        self.cpus[0].set_task(Task("swapper/0", 0))
        self.cmdline = cmdline
        for cpu in self.cpus:
            cpu.uname = uname or cpu.uname
        if banner is not None:
            self._set_string("linux_banner", banner + "\n")
        self._set_string("boot_command_line", cmdline)
        self.call("start_kernel")
        for init in late_init:
            init(self)
        self.mark_rodata_ro()

    # -- boot steps -------------------------------------------------------------------------
    def _set_string(self, symbol: str, text: str) -> None:
        """Fill a char[] of the image with a NUL-terminated string, refusing one too long."""
        try:
            sym = self.kallsyms.get(symbol, None)
        except SymbolError:
            sym = None
        data = text.encode() + b"\0"
        if sym is None or len(data) > sym.size:
            raise ElfError(f"{self.image_path}: no room for {text.strip()!r} in {symbol}"
                           + ("" if sym is None else f" ({sym.size} bytes)"))
        self.machine.write(sym.addr, data)

    def _map_image(self) -> None:
        names = {Perm.RX: ".text", Perm.R: ".rodata", Perm.RW: ".data/.bss", Perm.RWX: ".rwx"}
        for seg in self.image.segments:
            perms = _SEGMENT_PERMS.get(seg.flags & 7)
            if perms is None or seg.vaddr % PAGE_SIZE:
                raise ElfError(f"{self.image_path}: segment at {seg.vaddr:#x} with flags {seg.flags:#x} "
                               "is not page-aligned or has no usable protection")
            start, end = page_align_down(seg.vaddr), page_align_up(seg.vaddr + seg.memsz)
            name = f"kernel {names[perms]}"
            self.machine.map(name, start, end - start, Perm.RWX)
            self.machine.write(seg.vaddr, seg.data)
            self.segments.append(Segment(name, start, end, perms))

    def mark_rodata_ro(self) -> None:
        """The end of boot: text R-X, rodata R, data RW, as the segments ask."""
        for seg in self.segments:
            self.machine.protect(seg.start, seg.end - seg.start, seg.perms, "mark_rodata_ro")

    def set_kernel_text_rw(self) -> None:
        """x86 set_kernel_text_rw(): kernel text writable (and still executable)."""
        for seg in self.segments:
            if seg.perms & Perm.X:
                self.machine.protect(seg.start, seg.end - seg.start, Perm.RWX, "set_kernel_text_rw")

    def set_kernel_text_ro(self) -> None:
        for seg in self.segments:
            if seg.perms & Perm.X:
                self.machine.protect(seg.start, seg.end - seg.start, seg.perms, "set_kernel_text_ro")

    def _load_symbols(self) -> None:
        text = [(s.start, s.end) for s in self.segments if s.perms & Perm.X]
        syms = []
        for sym in self.image.symbols:
            if sym.kind in ("STT_FUNC", "STT_OBJECT") and sym.name:
                is_text = any(lo <= sym.value < hi for lo, hi in text)
                syms.append(KSym(sym.name, sym.value, sym.size, None, is_text))
            elif sym.kind == "STT_NOTYPE" and sym.name and sym.bind == "STB_GLOBAL":
                syms.append(KSym(sym.name, sym.value, 0, None, any(lo <= sym.value < hi for lo, hi in text)))
        self.kallsyms.add(syms, None, text)
        functions = [(s.addr, s.size) for s in syms if s.is_text and s.size]
        for seg in self.image.segments:  # the clock counts instructions from the image's text
            if seg.flags & 1:  # PF_X
                self.machine.clock.add_code(seg.vaddr, seg.data, functions)

    def _read_ksymtab(self) -> dict[str, int]:
        """The kernel's exports, read from __ksymtab in guest memory."""
        start, stop = self.symbol("__start___ksymtab"), self.symbol("__stop___ksymtab")
        raw = self.machine.read(start, stop - start)
        exports = {}
        for i in range(0, len(raw), 16):
            value = int.from_bytes(raw[i:i + 8], "little")
            name_ptr = int.from_bytes(raw[i + 8:i + 16], "little")
            exports[self.read_cstring(name_ptr)] = value
        return exports

    def _make_cpu(self, index: int, trap: int) -> Cpu:
        stack = STACKS_BASE + index * (STACK_SIZE + 2 * PAGE_SIZE) + PAGE_SIZE
        self.machine.map(f"cpu{index} stack", stack, STACK_SIZE, Perm.RW)
        percpu = PERCPU_BASE + index * PERCPU_SIZE
        self.machine.map(f"cpu{index} percpu", percpu, PERCPU_SIZE, Perm.RW, host=True)  # the clock
        return Cpu(self.machine, index, stack, STACK_SIZE, percpu, trap, self.kallsyms)

    # -- services -------------------------------------------------------------------------
    def symbol(self, name: str, module: str | None = "*") -> int:
        return self.kallsyms.resolve(name, module)

    def call(self, target: str | int, *args: int, cpu: int = 0, budget: int | None = CALL_BUDGET,
             progress: Callable[[int], None] | None = None) -> int:
        """Call a guest function by name or address on a CPU, to completion; one that has not
        returned within `budget` instructions (None: no limit) is stopped as a soft lockup.
        progress, if given, is told the instructions run every emu.cpu.PROGRESS_INSNS."""
        if budget is not None and budget < 1:
            raise BadCall(f"an instruction budget must be at least 1, not {budget}")
        addr = self.check_call(target, args)
        if not 0 <= cpu < len(self.cpus):
            raise SymbolError(f"no CPU {cpu}: this machine has CPUs 0-{len(self.cpus) - 1}")
        return run_to_completion(self.cpus[cpu].call(addr, *args, budget=budget, progress=progress))

    def check_call(self, target: str | int, args: tuple[int, ...]) -> int:
        """The address of a function the user asked to call with args, or BadCall /
        SymbolError saying why it cannot be called so."""
        addr = self.symbol(target) if isinstance(target, str) else target
        name = target if isinstance(target, str) else f"{target:#x}"
        if not self.kallsyms.is_text(addr):
            raise BadCall(f"{name} is not a function (it is not in kernel or module text)")
        if len(args) > len(ARG_REGS):
            raise BadCall(f"{name}: {len(args)} arguments given, the x86-64 calling convention passes at most "
                          f"{len(ARG_REGS)} in registers")
        for value in args:
            if not -(1 << 63) <= value < (1 << 64):
                raise BadCall(f"{name}: argument {value} does not fit in a 64-bit register")
        proto = self.prototype(addr)
        if proto is not None and not proto.accepts(len(args)):
            want = len(proto.params)
            raise BadCall(f"{name}: {proto} takes {'at least ' if proto.variadic else ''}{want} "
                          f"argument{'s' if want != 1 else ''}, {len(args)} given")
        return addr

    def prototype(self, addr: int) -> Prototype | None:
        """The prototype of the function at addr from its file's debug information (the
        kernel image's, or its module's), None when unknown."""
        hit = self.kallsyms.lookup(addr)
        if hit is None or hit[1] != 0:
            return None
        sym = hit[0]
        if sym.module is None:
            path = self.image_path
        else:
            mod = next((m for m in self.modules.modules if m.name == sym.module), None)
            if mod is None or not mod.path or not Path(mod.path).is_file():
                return None
            path = mod.path
        return prototypes_in(path).get(sym.name)

    def read_cstring(self, addr: int, limit: int = 256) -> str:
        raw = self.machine.read(addr, limit)
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def printk(self, text: str, cpu: int | None = None) -> None:
        """printk() from host-side kernel code: the text goes through the guest's printk,
        on the current CPU unless told otherwise."""
        c = self.cpus[self.current_cpu if cpu is None else cpu]
        args = c.percpu + PERCPU_ARGS
        data = b"%s\0" + text.encode()[: PERCPU_STAGING - PERCPU_ARGS - 4] + b"\0"
        self.machine.write(args, data)
        c.run(self.symbol("printk"), args, args + 3)

    def dmesg(self) -> str:
        used = self.machine.read_u64(self.symbol("log_next"))
        return self.machine.read(self.symbol("__log_buf"), used).decode("utf-8", "replace")

    def memory_map(self) -> list[MapEntry]:
        return self.machine.memory_map()

    def text_ranges(self) -> list[tuple[int, int]]:
        return [(s.start, s.end) for s in self.segments if s.perms & Perm.X]
