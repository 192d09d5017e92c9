"""One guarded registry for every Unicorn callback.

Unicorn swallows exceptions raised inside Python callbacks, so each callback runs inside a
guard that stores the exception, stops emulation and lets the caller re-raise it once
emu_start returns (the approach qiling and the bindings take).  The registry also keeps the
callback objects alive and hands out removable handles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from unicorn import Uc
from unicorn.unicorn_const import UC_HOOK_BLOCK, UC_HOOK_CODE


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

        raw = self._uc.hook_add(kind, guarded, begin=begin, end=end)
        self._live[raw] = guarded
        return HookHandle(raw, kind, begin, end)

    def remove(self, handle: HookHandle) -> None:
        if handle.raw in self._live:
            self._uc.hook_del(handle.raw)
            del self._live[handle.raw]

    def take_pending(self) -> BaseException | None:
        """The exception a callback raised during the last emu_start, cleared."""
        exc, self._pending = self._pending, None
        return exc
