"""Function probes: the commands of set_ftrace_filter ("func:traceoff:3", ...) hang a probe
on each function a glob matches (kernel/trace/ftrace.c: register_ftrace_function_probe(),
__unregister_ftrace_function_probe(), function_trace_probe_call(), t_hash_show(); the same
in v4.5 and v4.8.17 but where a comment names a tree).

The probes live in ftrace_func_hash, 128 buckets chosen by hash_long(ip), each a list newest
first; one ftrace_ops, trace_probe_ops, traces the union of their ips and calls
function_trace_probe_call (a guest callback whose host hook runs the probes of the ip).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generator

from .flags import FTRACE_FL_DISABLED, FTRACE_OPS_FL_INITIALIZED
from .hash import MatchType, filter_parse_regex
from .kernels import DISABLED_IGNORED_EVERYWHERE, HASH_GOLDEN_RATIO_64
from .ops import FtraceOps
from .tracefs.regex import ftrace_match_record

if TYPE_CHECKING:
    from .system import System

FTRACE_HASH_BITS = 7
FTRACE_FUNC_HASHSIZE = 1 << FTRACE_HASH_BITS
GOLDEN_RATIO_PRIME_64 = 0x9E37FFFFFFFC0001  # include/linux/hash.h, v4.5
GOLDEN_RATIO_64 = 0x61C8864680B583EB  # include/linux/hash.h, v4.6 on
_U64 = (1 << 64) - 1


def hash_long(val: int, bits: int, golden_ratio_64: bool) -> int:
    """hash_long() on 64 bits: hash_64(val, bits), the product's top bits."""
    factor = GOLDEN_RATIO_64 if golden_ratio_64 else GOLDEN_RATIO_PRIME_64
    return ((val * factor) & _U64) >> (64 - bits)


@dataclass(eq=False)
class ProbeOps:
    """struct ftrace_probe_ops: what a probe does when its function is hit, and how
    set_ftrace_filter lists it.  func(ip, parent_ip, probe, cpu) may change probe.data."""

    name: str
    func: Callable[[int, int, "FuncProbe", object], None]
    print: Callable[[str, int], str]  # (the function's name, data) -> the listed line


@dataclass(eq=False)
class FuncProbe:
    """struct ftrace_func_probe: one probe on one function; data is the command's count."""

    ops: ProbeOps
    ip: int
    data: int


class FtraceProbes:
    """ftrace_func_hash, trace_probe_ops and ftrace_probe_registered."""

    def __init__(self, system: "System"):
        self.system = system
        self.ftrace = system.ftrace
        self.buckets: list[list[FuncProbe]] = [[] for _ in range(FTRACE_FUNC_HASHSIZE)]
        self.trace_probe_ops = FtraceOps("trace_probe_ops", system.kernel.symbol("function_trace_probe_call"),
                                         FTRACE_OPS_FL_INITIALIZED, handler=self.function_trace_probe_call)
        self.registered = False  # ftrace_probe_registered
        self._golden = self.ftrace.kernel.has(HASH_GOLDEN_RATIO_64)

    def _key(self, ip: int) -> int:
        return hash_long(ip, FTRACE_HASH_BITS, self._golden)

    def __iter__(self):
        """The probes in t_hash_next()'s order: bucket by bucket, newest first in each."""
        for bucket in self.buckets:
            yield from bucket

    def listing(self) -> str:
        """t_hash_show() of every probe: each ops' print."""
        name = self.system.env.name_ip  # %ps: "func [mod]" for a module's function
        return "".join(p.ops.print(name(p.ip), p.data) for p in self)

    def function_trace_probe_call(self, ip: int, parent_ip: int, cpu) -> None:
        """function_trace_probe_call(): every probe of this ip, newest first."""
        for probe in list(self.buckets[self._key(ip)]):
            if probe.ip == ip:
                probe.ops.func(ip, parent_ip, probe, cpu)

    # -- registering ---------------------------------------------------------------------------
    def _enable(self) -> Generator[object, None, None]:
        """__enable_ftrace_function_probe(): the first probe registers trace_probe_ops (the
        sites themselves were updated by the hash move)."""
        if self.registered or not any(self.buckets):
            return
        yield from self.ftrace.ftrace_startup(self.trace_probe_ops, 0)
        self.registered = True

    def _disable(self) -> Generator[object, None, None]:
        """__disable_ftrace_function_probe(): the last probe gone, trace_probe_ops goes too."""
        if not self.registered or any(self.buckets):
            return
        yield from self.ftrace.ftrace_shutdown(self.trace_probe_ops, 0)
        self.registered = False

    def register_ftrace_function_probe(self, glob: str, ops: ProbeOps, data: int) -> Generator[object, None, int]:
        """register_ftrace_function_probe(): a probe on each function glob matches (v4.8.15
        on: not on a loading module's DISABLED records); how many, or -errno."""
        ftrace = self.ftrace
        kind, search, negate = filter_parse_regex(glob)
        if ftrace.warn_on(negate, "register_ftrace_function_probe: not"):  # no '!' here
            return -errno.EINVAL
        hash_ = self.trace_probe_ops.filter_hash.copy()
        ftrace.touch_disabled()
        if ftrace.ftrace_disabled:
            return -errno.ENODEV
        skip_disabled = ftrace.kernel.has(DISABLED_IGNORED_EVERYWHERE)
        kallsyms = self.system.kernel.kallsyms
        count = 0
        yield from ftrace.ftrace_lock.acquire()
        try:
            for rec in ftrace.records:
                if skip_disabled and rec.flags & FTRACE_FL_DISABLED:
                    continue
                hit = kallsyms.lookup(rec.ip)
                if hit is None or not ftrace_match_record(hit[0].name, hit[0].module, kind, search, False,
                                                          None, None, False):
                    continue
                count += 1
                hash_.add(rec.ip)  # enter_record()
                self.buckets[self._key(rec.ip)].insert(0, FuncProbe(ops, rec.ip, data))  # hlist_add_head_rcu
            # ftrace_hash_move(), and the sites' update if the ops is registered already
            ret = yield from ftrace.ftrace_hash_move_and_update_ops(self.trace_probe_ops, True, hash_)
            yield from self._enable()
            if ret:
                count = ret
        finally:
            ftrace.ftrace_lock.release()
        return count

    def unregister_ftrace_function_probe_func(self, glob: str, ops: ProbeOps | None
                                              ) -> Generator[object, None, None]:
        """__unregister_ftrace_function_probe(glob, ops, NULL, PROBE_TEST_FUNC), or every
        probe's (unregister_ftrace_function_probe_all) with ops None.

        As both trees have it, a parsed pattern compares its type and length with the glob as
        written, so "*sched" (compared against "*sche") and "*sch*" match no function:
        only a full name, "name*", "*" and "" remove probes."""
        ftrace = self.ftrace
        if glob in ("*", ""):
            match = None
        else:
            kind, search, negate = filter_parse_regex(glob)
            if ftrace.warn_on(negate, "__unregister_ftrace_function_probe: not"):
                return
            match = (kind, glob, len(search))
        hash_ = self.trace_probe_ops.filter_hash.copy()
        kallsyms = self.system.kernel.kallsyms
        for bucket in self.buckets:
            for probe in list(bucket):
                if ops is not None and probe.ops is not ops:
                    continue
                if match is not None:
                    hit = kallsyms.lookup(probe.ip)
                    if not _kernel_glob_match(hit[0].name if hit else "", *match):
                        continue
                hash_.remove(probe.ip)  # one entry per ip: another probe there loses it too
                bucket.remove(probe)
        yield from ftrace.ftrace_lock.acquire()
        try:
            # Disable first: an empty filter hash would mean every function.
            yield from self._disable()
            # ftrace_hash_move() alone: the references move but, unlike registering, no site
            # is rewritten here (both trees); a removed probe's site keeps calling
            # function_trace_probe_call, which finds nothing, until the next update.
            ops = self.trace_probe_ops
            ftrace.ftrace_hash_rec_disable(ops, True)
            ops.filter_hash = hash_
            ftrace.ftrace_hash_rec_enable(ops, True)
        finally:
            ftrace.ftrace_lock.release()


def _kernel_glob_match(name: str, kind: MatchType, search: str, length: int) -> bool:
    """ftrace_match() with struct ftrace_glob's search and len as the caller set them."""
    if kind == MatchType.FULL:
        return name == search
    if kind == MatchType.FRONT_ONLY:
        return name[:length] == search[:length] and len(name) >= min(length, len(search))
    if kind == MatchType.MIDDLE_ONLY:
        return search in name
    return len(name) >= length and name[len(name) - length:] == search[:length]
