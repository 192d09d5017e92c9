"""Each emulated CPU's clock counts the instructions it runs.

The emulated CPU runs at a stated frequency of 1 GHz, one instruction a cycle: a CPU's
clock, in virtual nanoseconds, is the number of guest instructions it has run, plus what the
trace recorders charge for each event they write (their own cost, a constant, so that the
host-hook and the in-guest recorder give the same timestamps).  Counting is done by a block
hook written in C (emu/native/icount.c): Unicorn's own instruction count costs a helper
call per instruction and made untraced code 8-20x slower; a C block hook costs about a
third more.  The clock lives in the guest's per-CPU area, which is host memory, so the hook
moves it as the guest runs and guest code (printk's timestamps, the scheduler, the in-guest
recorder) reads the same value as the host.
"""

from __future__ import annotations

import bisect
import ctypes
import weakref
from typing import TYPE_CHECKING

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from unicorn.unicorn_py3 import unicorn as binding  # uc_emu_stop, for the C hook to call

from . import native

if TYPE_CHECKING:
    from .machine import Machine

#: Virtual nanoseconds an instruction takes: a 1 GHz CPU retiring one instruction a cycle.
NS_PER_INSN = 1

_NO_LIMIT = (1 << 64) - 1
_DECODE = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint32)


def _library() -> ctypes.CDLL:
    lib = native.load("icount")
    if not getattr(lib, "_typed", False):
        vp = ctypes.c_void_p
        lib.icount_new.restype = vp
        lib.icount_new.argtypes = (_DECODE, vp, ctypes.c_uint32)
        for name, args in (("icount_free", (vp,)),
                           ("icount_start", (vp, vp, ctypes.c_uint64)),
                           ("icount_forget", (vp, ctypes.c_uint64, ctypes.c_uint64)), ("icount_settle", (vp, ctypes.c_uint64))):
            getattr(lib, name).restype = None
            getattr(lib, name).argtypes = args
        lib.icount_ran.restype = ctypes.c_uint64
        lib.icount_ran.argtypes = (vp,)
        lib.icount_stopped.restype = ctypes.c_int
        lib.icount_stopped.argtypes = (vp,)
        lib._typed = True
    return lib


class InstructionClock:
    """The block hook that advances the running CPU's clock by the instructions it runs.

    Code in an `uncounted` range runs without moving the clock: the recorders' own code,
    whose cost is charged as a constant per event instead.
    """

    def __init__(self, machine: Machine):
        self._machine = machine
        self._lib = lib = _library()
        self._cs = Cs(CS_ARCH_X86, CS_MODE_64)
        self.uncounted: list[tuple[int, int]] = []
        # add_code(): (start, end, bytes, function starts, (start, end) of each function)
        self._code: list[tuple[int, int, bytes, list[int], list[tuple[int, int]]]] = []
        self._code_starts: list[int] = []
        self._swept: dict[int, list[int]] = {}  # function start -> its instructions' addresses
        self._decode_cb = _DECODE(self._decode)  # kept alive as long as the counter
        emu_stop = ctypes.cast(binding.uclib.uc_emu_stop, ctypes.c_void_p)
        state = lib.icount_new(self._decode_cb, emu_stop, 14)
        if not state:
            raise MemoryError("no memory for the instruction counter")
        self._state = ctypes.c_void_p(state)
        weakref.finalize(self, lib.icount_free, self._state)
        self._hook = native.add_block_hook(machine.uc, ctypes.cast(lib.icount_block, ctypes.c_void_p), self._state,
                                           "the instruction counter")

    def _decode(self, addr: int, size: int) -> int:
        """Instructions in [addr, addr+size): called from C the first time a block is seen.
        Never raises (there is no Python frame above to take an exception)."""
        try:
            if any(lo <= addr < hi for lo, hi in self.uncounted):
                return 0
            starts = self._instruction_starts(addr, addr + size)
            if starts is not None:
                return max(1, bisect.bisect_left(starts, addr + size) - bisect.bisect_left(starts, addr))
            code = bytes(self._machine.uc.mem_read(addr, size))
            return max(1, sum(1 for _ in self._cs.disasm_lite(code, addr)))
        except Exception:  # an unreadable block still ran: count it as one instruction
            return 1

    # -- known code: each function decoded once, from the bytes it was loaded with -----------
    def add_code(self, start: int, data: bytes, functions: list[tuple[int, int]]) -> None:
        """Code loaded at start (a kernel text segment, a module's text), with its functions
        as (address, size).  A block inside one is counted from the function's instruction
        boundaries, found once: ftrace's patches never move them (a 5-byte call and a 5-byte
        nop), and the bytes as loaded never hold a breakpoint half-way through a patch."""
        funcs = sorted((a, a + n) for a, n in functions if n and start <= a and a + n <= start + len(data))
        self._code.append((start, start + len(data), data, [a for a, _ in funcs], funcs))
        self._code.sort(key=lambda region: region[0])
        self._code_starts = [region[0] for region in self._code]

    def _instruction_starts(self, lo: int, hi: int) -> list[int] | None:
        i = bisect.bisect_right(self._code_starts, lo) - 1
        if i < 0 or hi > self._code[i][1]:
            return None
        start, _, data, func_starts, funcs = self._code[i]
        j = bisect.bisect_right(func_starts, lo) - 1
        if j < 0 or hi > funcs[j][1]:
            return None  # outside a known function, or running on past its end
        fstart, fend = funcs[j]
        starts = self._swept.get(fstart)
        if starts is None:
            code = data[fstart - start:fend - start]
            starts = self._swept[fstart] = [a for a, *_ in self._cs.disasm_lite(code, fstart)]
        return starts

    def sweep_all(self) -> None:
        """Find every known function's instruction boundaries now (before forking children
        that would each find them again)."""
        for region in self._code:
            for fstart, fend in region[4]:
                self._instruction_starts(fstart, fstart + 1)

    def uncount(self, start: int, end: int) -> None:
        """Run [start, end) without moving the clock (see the class's docstring)."""
        self.uncounted.append((start, end))
        self._lib.icount_forget(self._state, start, end)  # counted before: decode them again

    def forget(self, start: int, end: int) -> None:
        """Forget the counts of blocks in [start, end): other code may be there now."""
        self._lib.icount_forget(self._state, start, end)
        kept = [r for r in self._code if r[1] <= start or r[0] >= end]
        if len(kept) != len(self._code):
            for region in self._code:
                if region not in kept:
                    for fstart, _ in region[4]:
                        self._swept.pop(fstart, None)
            self._code = kept
            self._code_starts = [region[0] for region in kept]

    def start(self, clock_address: int, limit: int | None = None) -> None:
        """A CPU is about to run: count into the 8-byte clock at this host address, and stop
        the run at a block's start once it has run `limit` instructions.  A run stopped so
        resumes where it stopped, each hook running once (see icount_start)."""
        self._lib.icount_start(self._state, clock_address, _NO_LIMIT if limit is None else max(1, limit))

    def stop(self, rip: int) -> None:
        """The run ended at rip: give back what was counted of the last block but not run,
        and count nothing until the next start()."""
        self._lib.icount_settle(self._state, rip)

    @property
    def ran(self) -> int:
        """Instructions the last run (start() to stop()) ran."""
        return self._lib.icount_ran(self._state)

    @property
    def reached_limit(self) -> bool:
        """The last run was stopped for reaching its limit."""
        return bool(self._lib.icount_stopped(self._state))
