"""struct ftrace_ops: a tracer's callback and the hashes selecting what it traces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from .flags import FTRACE_OPS_FL_ENABLED, FTRACE_OPS_FL_SAVE_REGS
from .hash import FtraceHash


@dataclass(eq=False)
class FtraceOps:
    """func is the guest address the trampoline calls for this ops (its callback)."""

    name: str
    func: int
    flags: int = 0
    filter_hash: FtraceHash = field(default_factory=FtraceHash)
    notrace_hash: FtraceHash = field(default_factory=FtraceHash)
    trampoline: int = 0
    #: The host side of func: called as handler(ip, parent_ip, cpu) for each traced call.
    handler: Optional[Callable[[int, int, object], None]] = None

    @property
    def enabled(self) -> bool:
        return bool(self.flags & FTRACE_OPS_FL_ENABLED)

    @property
    def save_regs(self) -> bool:
        return bool(self.flags & FTRACE_OPS_FL_SAVE_REGS)

    def traces_mod(self) -> bool:
        """ops_traces_mod(): both hashes empty, so it traces every function, modules' too."""
        return self.filter_hash.empty and self.notrace_hash.empty

    def __repr__(self) -> str:
        state = "ENABLED" if self.enabled else "off"
        return (f"<FtraceOps {self.name} {state} filter={len(self.filter_hash)} "
                f"notrace={len(self.notrace_hash)} func={self.func:#x}>")
