"""The single text-write path.

Every write to kernel or module text is a store executed by the emulated CPU doing the work,
through the guest's ftrace_text_poke_batch routine (the role of probe_kernel_write), so
Unicorn alone decides whether the page may be written.  Translated code for each written
range is invalidated afterwards, so the next fetch sees the new bytes.
"""

from __future__ import annotations

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
        done = 0
        base, size = self.staging[cpu.index]
        while done < len(writes):
            chunk, used = [], 0
            for addr, data in writes[done:]:
                need = _ENTRY + len(data)
                if chunk and used + need > size:
                    break
                if need > size:
                    raise MemoryAccessError(f"text write of {len(data)} bytes at {addr:#x} is too large")
                chunk.append((addr, bytes(data)))
                used += need
            self._run_chunk(cpu, base, chunk, done)
            done += len(chunk)

    def _run_chunk(self, cpu: Cpu, base: int, chunk: list[tuple[int, bytes]], done_before: int) -> None:
        vec = bytearray()
        blob = bytearray()
        blob_base = base + _ENTRY * len(chunk)
        for addr, data in chunk:
            vec += addr.to_bytes(8, "little") + (blob_base + len(blob)).to_bytes(8, "little")
            vec += len(data).to_bytes(8, "little")
            blob += data
        self.machine.write(base, bytes(vec + blob))
        if self.machine.tracker is not None:
            for addr, data in chunk:
                self.machine.tracker.touch_pages("mem", addr, addr + len(data))
        try:
            cpu.run(self.routine, base, len(chunk))
            finished = len(chunk)
        except GuestFault as fault:
            finished = fault.regs.get("rax", 0)
            # The faulting store may have landed in part (a site across two pages).
            self._invalidate(cpu, chunk[finished: finished + 1], notify=False)
            self._invalidate(cpu, chunk[:finished])
            if fault.kind == "write" and fault.address is not None:
                raise TextWriteFault(fault.address, done_before + finished) from None
            raise
        self._invalidate(cpu, chunk[:finished])

    def _invalidate(self, cpu: Cpu, written: list[tuple[int, bytes]], notify: bool = True) -> None:
        if not written:
            return
        lo = min(addr for addr, _ in written)
        hi = max(addr + len(data) for addr, data in written)
        if hi - lo <= INVALIDATE_SPAN:  # one call for a batch of nearby sites
            self.machine.uc.ctl_remove_cache(lo, hi)
        else:
            for addr, data in written:
                self.machine.uc.ctl_remove_cache(addr, addr + len(data))
        for addr, data in written if notify else ():
            for listener in list(self.listeners):
                listener(cpu, addr, data)
