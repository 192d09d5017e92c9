"""The single text-write path.

Every write to kernel or module text is a store executed by the emulated CPU doing the work,
through the guest's ftrace_text_poke_batch routine (the role of probe_kernel_write), so
Unicorn alone decides whether the page may be written.  Translated code for each written
range is invalidated afterwards, so the next fetch sees the new bytes.
"""

from __future__ import annotations

import struct
from typing import Sequence

from .cpu import Cpu
from .errors import GuestFault, MemoryAccessError, TextWriteFault
from .machine import Machine

_ENTRY = 24  # struct text_poke {dst, src, len}
#: Translated code is dropped for a batch's whole span when it is at most this long.
INVALIDATE_SPAN = 4 << 20


class TextPoker:
    def __init__(self, machine: Machine, routine: int, staging: dict[int, tuple[int, int]]):
        """routine: address of ftrace_text_poke_batch; staging: cpu index -> (addr, size) of
        a writable per-CPU buffer that holds the request vector and the new bytes."""
        self.machine = machine
        self.routine = routine
        self.staging = staging
        self.listeners: list = []  # called as listener(cpu, addr, data) after each write lands

    def read(self, addr: int, size: int) -> bytes:
        return self.machine.read(addr, size)

    def write(self, cpu: Cpu, writes: Sequence[tuple[int, bytes]]) -> None:
        """Store each (addr, data) in order on cpu.  On a write fault raises TextWriteFault
        naming the address and how many writes completed before it."""
        base, size = self.staging[cpu.index]
        # ftrace's passes write as many bytes at every site: then chunks hold a fixed count.
        lengths = {len(data) for _, data in writes}
        per_chunk = size // (_ENTRY + max(lengths)) if len(lengths) == 1 else 0
        done, total = 0, len(writes)
        while done < total:
            end = min(total, done + per_chunk) if per_chunk else done
            used = 0
            while not per_chunk and end < total:
                need = _ENTRY + len(writes[end][1])
                if need > size:
                    raise MemoryAccessError(f"text write of {need - _ENTRY} bytes at {writes[end][0]:#x} is too large")
                if end > done and used + need > size:
                    break
                used += need
                end += 1
            self._run_chunk(cpu, base, [(addr, bytes(data)) for addr, data in writes[done:end]], done)
            done = end

    def _run_chunk(self, cpu: Cpu, base: int, chunk: list[tuple[int, bytes]], done_before: int) -> None:
        src = base + _ENTRY * len(chunk)
        fields: list[int] = []
        for addr, data in chunk:
            fields += (addr, src, len(data))
            src += len(data)
        machine = self.machine
        machine.write(base, struct.pack(f"<{len(fields)}Q", *fields) + b"".join(data for _, data in chunk))
        tracker = machine.tracker
        # What the stores will change, said before they run (one may fault): a call site's
        # bytes, or else the page's code (emu.footprint).
        site_pages = tracker.text_writes(chunk) if tracker is not None else frozenset()
        if site_pages:
            tracker.site_stores(site_pages)
        try:
            cpu.run(self.routine, base, len(chunk), fixup=True)  # probe_kernel_write(): no oops
            finished = len(chunk)
        except GuestFault as fault:
            finished = fault.regs.get("rax", 0)
            # The faulting store may have landed in part (a site across two pages).
            self._invalidate(cpu, chunk[finished: finished + 1], notify=False)
            self._invalidate(cpu, chunk[:finished])
            if fault.kind == "write" and fault.address is not None:
                raise TextWriteFault(fault.address, done_before + finished) from None
            raise
        finally:
            if site_pages:
                tracker.site_stores(frozenset())
                machine.flush_tlb()  # a later store to those pages is no site write
        self._invalidate(cpu, chunk[:finished])

    def _invalidate(self, cpu: Cpu, written: list[tuple[int, bytes]], notify: bool = True) -> None:
        if not written:
            return
        addrs = [addr for addr, _ in written]
        lo, hi = min(addrs), max(addrs) + max(len(data) for _, data in written)
        if hi - lo <= INVALIDATE_SPAN:  # one call for a batch of nearby sites
            self.machine.uc.ctl_remove_cache(lo, hi)
        else:
            for addr, data in written:
                self.machine.uc.ctl_remove_cache(addr, addr + len(data))
        for addr, data in written if notify else ():
            for listener in list(self.listeners):
                listener(cpu, addr, data)
