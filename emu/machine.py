"""The emulated machine: one Unicorn instance, its memory map and page protections.

Protections are Unicorn's own (there is no second map to drift from it): every change goes
through Machine.protect(), and the memory map shown to users is read back from Unicorn.
Host-side writes are refused where the guest could not write either, so nothing on the host
can bypass the text-write path (emu.textpoke).
"""

from __future__ import annotations

import bisect
import ctypes
from dataclasses import dataclass
from enum import IntFlag
from typing import Callable, Iterator

from unicorn import UC_ARCH_X86, UC_MODE_64, UC_TLB_VIRTUAL, Uc, UcError
from unicorn import unicorn_const as uc_const
from unicorn.unicorn_py3 import unicorn as binding  # uc_reg_read / uc_reg_write_batch, called directly
from unicorn.x86_const import UC_X86_REG_RIP

from .clock import InstructionClock
from .errors import MemoryAccessError
from .hooks import HookRegistry

PAGE_SIZE = 0x1000


class Perm(IntFlag):
    """Page protection bits, numerically Unicorn's UC_PROT_*."""

    NONE = 0
    R = 1
    W = 2
    X = 4
    RW = 3
    RX = 5
    RWX = 7

    def __str__(self) -> str:
        return "".join(c if self & bit else "-" for c, bit in (("r", Perm.R), ("w", Perm.W), ("x", Perm.X)))


# What a virtual-TLB entry allows (see Machine._on_tlb_fill), as UC_PROT_* bits.
_DATA_PERMS = uc_const.UC_PROT_READ | uc_const.UC_PROT_WRITE
_FETCH_PERMS = uc_const.UC_PROT_READ | uc_const.UC_PROT_EXEC
_W = int(Perm.W)
# The count given to a run that should not stop on one (see Machine.emu_start).
_COUNT_FOREVER = 1 << 62


def page_align_down(addr: int) -> int:
    return addr & ~(PAGE_SIZE - 1)


def page_align_up(addr: int) -> int:
    return (addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


@dataclass(frozen=True)
class MapEntry:
    """One contiguous range of the memory map as Unicorn holds it, with the owner's name."""

    start: int
    end: int  # exclusive
    perms: Perm
    name: str

    def __str__(self) -> str:
        return f"{self.start:016x}-{self.end:016x} {self.perms} {self.name}"


@dataclass
class MemFault:
    """What the invalid-memory hook saw just before emu_start failed."""

    access: int
    address: int
    size: int


_ACCESS_NAMES = {
    uc_const.UC_MEM_READ_UNMAPPED: "read",
    uc_const.UC_MEM_WRITE_UNMAPPED: "write",
    uc_const.UC_MEM_FETCH_UNMAPPED: "fetch",
    uc_const.UC_MEM_READ_PROT: "read",
    uc_const.UC_MEM_WRITE_PROT: "write",
    uc_const.UC_MEM_FETCH_PROT: "fetch",
}


def access_kind(access: int) -> str:
    return _ACCESS_NAMES.get(access, "access")


def access_is_protection(access: int) -> bool:
    return access in (uc_const.UC_MEM_READ_PROT, uc_const.UC_MEM_WRITE_PROT, uc_const.UC_MEM_FETCH_PROT)


class Registers:
    """64-bit general registers, read and written with one call into Unicorn each.  The
    binding's reg_read and reg_write pick a register class in Python on every call (~4 us);
    a guest call sets seven or eight registers and reads back three, and at record
    granularity the explorer makes ~500 such calls a run."""

    def __init__(self, uc: Uc):
        self._uch = uc._uch
        self._value = ctypes.c_uint64()
        self._ref = ctypes.byref(self._value)

    def read(self, reg: int) -> int:
        status = binding.uclib.uc_reg_read(self._uch, reg, self._ref)
        if status != uc_const.UC_ERR_OK:
            raise UcError(status)
        return self._value.value

    def writer(self, regs: tuple[int, ...]) -> Callable[[list[int]], None]:
        """A function that writes values (unsigned, 64-bit) to regs, in one call."""
        n = len(regs)
        ids = (ctypes.c_int32 * n)(*regs)
        values = (ctypes.c_uint64 * n)()
        pointers = (ctypes.c_void_p * n)(*(ctypes.addressof(values) + 8 * i for i in range(n)))
        uch, write_batch = self._uch, binding.uclib.uc_reg_write_batch

        def write(vals: list[int]) -> None:
            values[:] = vals
            status = write_batch(uch, ids, pointers, n)
            if status != uc_const.UC_ERR_OK:
                raise UcError(status)
        return write


class Machine:
    """A Unicorn x86-64 instance with named mappings and one place that changes protections."""

    def __init__(self) -> None:
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        # Kernel-half addresses only execute with the virtual TLB (unicorn issue #2010).
        self.uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        self.hooks = HookRegistry(self.uc)
        self.regs = Registers(self.uc)
        self._names: dict[int, tuple[int, str]] = {}  # mapping start -> (end, name)
        # Unicorn's region list, read back after each map/unmap/protect (the only places it
        # changes), so host accesses need not ask Unicorn every time.
        self._regions: list[tuple[int, int, Perm]] = []
        self._starts: list[int] = []  # the regions' first addresses, for bisect
        self.last_mem_fault: MemFault | None = None
        self.last_interrupt: int | None = None
        self.running_cpu = None  # the emu.cpu.Cpu inside emu_start, for hooks to ask
        # No UC_HOOK_MEM_INVALID while the guest runs: with any such hook registered Unicorn
        # sends every store down its slow path (about 3x the cost of a traced call).  What
        # faulted is asked afterwards, by replaying the one instruction (explain_fault).
        self.hooks.add(uc_const.UC_HOOK_INTR, self._on_interrupt)
        self.hooks.add(uc_const.UC_HOOK_TLB_FILL, self._on_tlb_fill)
        # Observers of protection changes (the timeline).
        self.protect_listeners: list = []
        # Exception handlers by vector: handler(cpu, rip) -> where to resume, or None for an oops.
        self.trap_handlers: dict[int, Callable[[object, int], int | None]] = {}
        self.trap_reads: tuple = ()  # the tokens a handler reads, for the tracker (emu.footprint)
        # The die notifier chain (notify_die(DIE_OOPS) in __die(), emu.oops.notify_die):
        # fn(cpu) -> the lines it printed, which the oops report carries after its oops line.
        self.die_notifiers: list[Callable[[object], str]] = []
        # An emu.footprint.Tracker while the explorer records steps: what host code writes
        # and which protections change; guest code run by emu.cpu counts as everything,
        # unless the tracker is precise: then the TLB reports its pages (_on_tlb_fill).
        self._tracker = None
        self._recording = None  # the tracker, when precise
        self._counting = False  # see emu_start()
        # Mappings backed by host memory the host reads and writes directly (map(host=True)).
        self._host: dict[int, ctypes.Array] = {}
        #: Counts each CPU's instructions into its clock (emu.clock).
        self.clock = InstructionClock(self)

    # -- following what steps touch (emu.footprint) ------------------------------------------
    @property
    def tracker(self):
        return self._tracker

    @tracker.setter
    def tracker(self, tracker) -> None:
        self._tracker = tracker
        self._recording = tracker if tracker is not None and tracker.precise else None
        self.hooks.tracker = tracker  # hooks say what host state they read (Tracker.hook)
        self.flush_tlb()  # entries filled either way must be filled again this way

    def begin_step(self) -> None:
        """A step begins: empty the TLB, so each page the step's guest code touches misses
        once and is reported (with a precise tracker)."""
        if self._recording is not None:
            self.flush_tlb()

    def flush_tlb(self) -> None:
        # UC_CTL_TLB_FLUSH has no method of its own in the Python binding (unicorn 2.1).
        self.uc.ctl(uc_const.UC_CTL_TLB_FLUSH, uc_const.UC_CTL_IO_WRITE)

    # -- mappings -------------------------------------------------------------------------
    def map(self, name: str, start: int, size: int, perms: Perm, host: bool = False) -> None:
        """Map [start, start+size) page-aligned, zero-filled, with perms.  With host=True the
        memory is the host's own, so host code may reach it through host_address()."""
        if start % PAGE_SIZE or size % PAGE_SIZE or size <= 0:
            raise MemoryAccessError(f"{name}: mapping {start:#x}+{size:#x} is not page-aligned")
        buffer = (ctypes.c_char * size)() if host else None
        try:
            if buffer is not None:
                self.uc.mem_map_ptr(start, size, int(perms), ctypes.addressof(buffer))
            else:
                self.uc.mem_map(start, size, int(perms))
        except UcError as exc:
            raise MemoryAccessError(f"{name}: cannot map {start:#x}+{size:#x}: {exc}") from None
        if buffer is not None:
            self._host[start] = buffer
        self._names[start] = (start + size, name)
        self._reload_regions()
        self.clock.forget(start, start + size)  # code may now be where other code was

    def unmap(self, start: int) -> None:
        """Unmap the mapping that map() created at start."""
        end, _ = self._names.pop(start)
        self.uc.mem_unmap(start, end - start)
        self.uc.ctl_remove_cache(start, end)
        self._host.pop(start, None)
        self._reload_regions()
        self.clock.forget(start, end)

    def host_address(self, addr: int) -> int:
        """Where guest address addr lives in this process, for a mapping made with host=True."""
        for start, buffer in self._host.items():
            if start <= addr < start + len(buffer):
                return ctypes.addressof(buffer) + addr - start
        raise MemoryAccessError(f"{addr:#x} is not in host-backed memory")

    def protect(self, start: int, size: int, perms: Perm, why: str = "") -> None:
        """The one place page protections change (and the event observers see)."""
        start_al, end_al = page_align_down(start), page_align_up(start + size)
        before = list(self.iter_ranges(start_al, end_al - start_al)) if self.tracker is not None else ()
        self.uc.mem_protect(start_al, end_al - start_al, int(perms))
        self._reload_regions()
        for lo, hi, old in before:
            self.tracker.protection(lo, hi, int(old), int(perms))
        for listener in list(self.protect_listeners):
            listener(start_al, end_al, perms, why)

    def name_of(self, addr: int) -> str | None:
        for start, (end, name) in self._names.items():
            if start <= addr < end:
                return name
        return None

    def memory_map(self) -> list[MapEntry]:
        """The memory map as Unicorn holds it now, each range named after its mapping."""
        entries = []
        for begin, end, perms in sorted(self.uc.mem_regions()):
            entries.append(MapEntry(begin, end + 1, Perm(perms), self.name_of(begin) or "?"))
        return entries

    def _reload_regions(self) -> None:
        self._regions = sorted((begin, end + 1, Perm(perms)) for begin, end, perms in self.uc.mem_regions())
        self._starts = [begin for begin, _, _ in self._regions]

    def _region_index(self, addr: int) -> int:
        """Index of the last region starting at or below addr (-1 if none); it holds addr
        when addr is below its end."""
        return bisect.bisect_right(self._starts, addr) - 1

    def perms_at(self, addr: int) -> Perm | None:
        i = self._region_index(addr)
        if i >= 0 and addr < self._regions[i][1]:
            return self._regions[i][2]
        return None

    def iter_ranges(self, start: int, size: int) -> Iterator[tuple[int, int, Perm]]:
        """(begin, end_exclusive, perms) for each mapped piece overlapping [start, start+size)."""
        stop = start + size
        for begin, end, perms in self._regions[max(0, self._region_index(start)):]:
            if begin >= stop:
                return
            lo, hi = max(begin, start), min(end, stop)
            if lo < hi:
                yield lo, hi, perms

    # -- running guest code ----------------------------------------------------------------
    def emu_start(self, begin: int, until: int, count: int = 0, timeout_us: int = 0) -> None:
        """uc.emu_start, keeping Unicorn's instruction-count hook once a counted run made it.

        Unicorn adds that hook for a run with a count and removes it for a run without one,
        dropping every translated block each time: alternating the two (time slices, then a
        text write) retranslated all code on every slice.  So once counting, always count.
        """
        if count:
            self._counting = True
        elif self._counting:
            count = _COUNT_FOREVER
        self.uc.emu_start(begin, until, timeout=timeout_us, count=count)

    # -- host access ----------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        try:
            data = bytes(self.uc.mem_read(addr, size))
        except UcError:
            raise MemoryAccessError(f"cannot read {size} bytes at {addr:#x}: not mapped") from None
        if self.tracker is not None:
            self.tracker.touch_pages(addr, addr + size, write=False)
        return data

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write(self, addr: int, data: bytes) -> None:
        """Host write into guest memory, allowed only where the guest itself may write.

        Unicorn's own mem_write ignores protections; refusing here keeps the text-write path
        (emu.textpoke) the only way to change read-only memory.
        """
        if not data:
            return
        if self.tracker is not None:  # first: a refused write depended on the protection too
            self.tracker.touch_pages(addr, addr + len(data))
        i = self._region_index(addr)
        inside = i >= 0 and addr + len(data) <= self._regions[i][1]
        if not (inside and int(self._regions[i][2]) & _W):  # else: the common case, all writable
            covered = 0
            for lo, hi, perms in self.iter_ranges(addr, len(data)):
                if not perms & Perm.W:
                    raise MemoryAccessError(
                        f"host write to {lo:#x} refused: {self.name_of(lo) or 'memory'} is {perms}")
                covered += hi - lo
            if covered != len(data):
                raise MemoryAccessError(f"cannot write {len(data)} bytes at {addr:#x}: not mapped")
        self.uc.mem_write(addr, bytes(data))

    def _on_interrupt(self, uc: Uc, intno: int, data: object) -> None:
        # There is no IDT: an exception a handler does not resolve ends the run as an oops.
        handler = self.trap_handlers.get(intno)
        if handler is not None and self._tracker is not None:
            self._tracker.hook(self.trap_reads)
        if handler is not None and self.running_cpu is not None:
            resume = handler(self.running_cpu, uc.reg_read(UC_X86_REG_RIP))
            if resume is not None:
                uc.reg_write(UC_X86_REG_RIP, resume)
                return
        self.last_interrupt = intno
        uc.emu_stop()

    def _on_tlb_fill(self, uc: Uc, vaddr: int, access: int, entry, data: object) -> bool:
        # The virtual TLB maps each page to itself.  Left to itself it fills an entry with only
        # the permission of the access that missed, so a stack page, read and written in turn,
        # misses on every switch.  Filling data accesses as read+write and fetches as
        # read+execute makes an entry serve every access of its kind; an entry that is also
        # executable would send every store down Unicorn's slow path (its check for
        # self-modifying code).  Protections are still enforced, from the memory regions'
        # own permissions; a page both executed and written refills on each switch.
        page = vaddr & ~(PAGE_SIZE - 1)
        entry.paddr = page
        tracker = self._recording
        if tracker is None:
            entry.perms = _FETCH_PERMS if access == uc_const.UC_MEM_FETCH else _DATA_PERMS
            return True
        # Recording a step's pages: an entry allows only what has been reported, so a page
        # first read misses again when first written, and a page run from misses again when
        # first read as data (its code and its data are separate tokens).  Running code
        # from a page reads its code, and the next page's: a translated block may run on
        # into it, and a block found in Unicorn's cache asks the TLB for its first page only.
        if access == uc_const.UC_MEM_WRITE:
            tracker.touch_page(page >> 12, True)
            entry.perms = _DATA_PERMS
        elif access == uc_const.UC_MEM_FETCH:
            tracker.fetch_page(page >> 12)
            tracker.fetch_page((page >> 12) + 1)
            entry.perms = uc_const.UC_PROT_EXEC
        else:
            tracker.touch_page(page >> 12, False)
            entry.perms = uc_const.UC_PROT_READ
        return True

    def explain_fault(self) -> MemFault | None:
        """After emu_start failed on a memory access, with the registers still at the faulting
        instruction (Unicorn's faults are precise): run that one instruction again with an
        invalid-memory hook to learn the access and address, then put the registers back."""
        uc = self.uc
        ctx = uc.context_save()
        counting = self._counting  # one replay is no reason to count every later run
        self.last_mem_fault = None
        handle = self.hooks.add(uc_const.UC_HOOK_MEM_INVALID, self._on_invalid_memory)
        try:
            self.emu_start(uc.reg_read(UC_X86_REG_RIP), 0, count=1)
        except UcError:
            pass
        finally:
            self.hooks.remove(handle)
            self.hooks.take_pending()
            uc.context_restore(ctx)
            self._counting = counting
        return self.last_mem_fault

    def _on_invalid_memory(self, uc: Uc, access: int, address: int, size: int, value: int, data: object) -> bool:
        self.last_mem_fault = MemFault(access, address, size)
        return False
