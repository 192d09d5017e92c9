"""One guarded registry for every Unicorn callback.

Unicorn swallows exceptions raised inside Python callbacks, so each callback runs inside a
guard that stores the exception, stops emulation and lets the caller re-raise it once
emu_start returns (the approach qiling and the bindings take).  The registry also keeps the
callback objects alive and hands out removable handles.

A block hook on a single address (a call site: the call audit has one on each) does not go
to Unicorn's list of hooks, which Unicorn walks whole at the start of every block: with
~170 of them, guest code ran ~90x slower.  They share one block hook written in C
(emu/native/sites.c) that looks the block's address up in a sorted array and calls back
only for the addresses hooked.  Unlike a hook of Unicorn's, one added there takes effect at
once, even on code already translated.
"""

from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from unicorn import Uc
from unicorn.unicorn_const import UC_HOOK_BLOCK, UC_HOOK_CODE

from . import native

_SITE = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint32)


@dataclass(frozen=True)
class HookHandle:
    """A registered hook; pass it to HookRegistry.remove()."""

    raw: int
    kind: int
    begin: int
    end: int


class HookRegistry:
    def __init__(self, uc: Uc):
        self._uc = uc
        self._live: dict[int, Callable[..., Any]] = {}
        self._pending: BaseException | None = None
        #: An emu.footprint.Tracker while the explorer records steps: each code or block
        #: hook that runs reports the tokens its tag has here, (reads, writes) (set by the
        #: explorer: what the host's hooks can see and change).
        self.tracker = None
        self.reports: dict[str, tuple[tuple, tuple]] = {}
        #: The tag of block hooks that sit on call sites, one each: each such hook that runs
        #: also reports running its site (Tracker.run_site).
        self.site_tag: str | None = None
        # Block hooks on single addresses (see the module's docstring): address -> [(raw,
        # guarded callback)], in the order added; made on the first, after the instruction
        # counter's C hook (emu.machine adds that one first): sites.c says why it matters.
        self._site_hooks: dict[int, list[tuple[int, Callable[..., Any]]]] = {}
        self._sites: ctypes.c_void_p | None = None
        self._next_site_raw = -1  # their handles' raw values: negative, unlike Unicorn's

    def add(self, kind: int, callback: Callable[..., Any], begin: int = 1, end: int = 0,
            tag: str = "hooks") -> HookHandle:
        """Register callback for hook kind over [begin, end] (begin > end: everywhere).  A
        code or block hook reports to the tracker the tokens of its tag (reports)."""

        reports = kind in (UC_HOOK_CODE, UC_HOOK_BLOCK)
        on_site = kind == UC_HOOK_BLOCK and begin == end

        def guarded(*args: Any) -> Any:
            if reports and self.tracker is not None:
                self.tracker.hook(*self.reports.get(tag, ((), ())))
                if on_site and tag == self.site_tag:
                    self.tracker.run_site(begin)
            try:
                return callback(*args)
            except BaseException as exc:  # re-raised by raise_pending()
                if self._pending is None:
                    self._pending = exc
                self._uc.emu_stop()
                return False

        if on_site:
            return self._add_site(begin, guarded)
        raw = self._uc.hook_add(kind, guarded, begin=begin, end=end)
        self._live[raw] = guarded
        return HookHandle(raw, kind, begin, end)

    def remove(self, handle: HookHandle) -> None:
        if handle.raw < 0:
            hooks = self._site_hooks.get(handle.begin, [])
            hooks[:] = [(raw, fn) for raw, fn in hooks if raw != handle.raw]
            if not hooks and self._site_hooks.pop(handle.begin, None) is not None:
                self._lib.sites_remove(self._sites, handle.begin)
        elif handle.raw in self._live:
            self._uc.hook_del(handle.raw)
            del self._live[handle.raw]

    # -- block hooks on single addresses ----------------------------------------------------
    def _add_site(self, addr: int, guarded: Callable[..., Any]) -> HookHandle:
        if self._sites is None:
            self._lib = lib = native.load("sites")
            vp = ctypes.c_void_p
            lib.sites_new.restype = vp
            lib.sites_new.argtypes = (_SITE,)
            lib.sites_add.restype = ctypes.c_int
            lib.sites_add.argtypes = (vp, ctypes.c_uint64)
            lib.sites_remove.argtypes = (vp, ctypes.c_uint64)
            lib.sites_free.argtypes = (vp,)
            self._site_cb = _SITE(self._on_site)  # kept alive as long as the registry
            state = lib.sites_new(self._site_cb)
            if not state:
                raise MemoryError("no memory for the call-site hooks")
            self._sites = ctypes.c_void_p(state)
            weakref.finalize(self, lib.sites_free, self._sites)
            native.add_block_hook(self._uc, ctypes.cast(lib.sites_block, vp), self._sites, "call-site hooks")
            # Code translated before a block hook existed never calls it (unicorn-facts.md);
            # code translated from now on calls this one, so later site hooks need no flush.
            self._uc.ctl_flush_tb()
        if addr not in self._site_hooks:
            if self._lib.sites_add(self._sites, addr) != 0:
                raise MemoryError(f"no memory for a hook at {addr:#x}")
            self._site_hooks[addr] = []
        raw, self._next_site_raw = self._next_site_raw, self._next_site_raw - 1
        self._site_hooks[addr].append((raw, guarded))
        return HookHandle(raw, UC_HOOK_BLOCK, addr, addr)

    def _on_site(self, addr: int, size: int) -> None:
        """From sites.c: a block starts at a hooked address.  Its hooks run in the order
        added; once one has failed (and stopped the run), the rest are skipped, as Unicorn
        skips a block's later hooks once one asks it to stop.  Never raises: there is no
        Python frame above to take an exception."""
        try:
            for _, guarded in tuple(self._site_hooks.get(addr, ())):
                if self._pending is not None:
                    break
                guarded(self._uc, addr, size, None)
        except BaseException as exc:
            if self._pending is None:
                self._pending = exc
            self._uc.emu_stop()

    def take_pending(self) -> BaseException | None:
        """The exception a callback raised during the last emu_start, cleared."""
        exc, self._pending = self._pending, None
        return exc
