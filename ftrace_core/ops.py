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
    #: What __register_ftrace_function() saved of func (and its handler) before set_ftrace_pid
    #: put ftrace_pid_func in its place; put back at unregistering.
    saved_func: int = 0
    saved_handler: Optional[Callable[[int, int, object], None]] = None
    #: ops->private: the trace array's pid filter for an ops of a trace array (v4.7 on).
    private: object = None
    #: ops->func_hash pointing at another ops' hashes (graph_ops at global_ops.local_hash):
    #: a filter change on that ops moves this one's too (ftrace_hash_rec_update_modify()).
    func_hash: Optional["FtraceOps"] = None

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
