"""The function profiler: `function_profile_enabled` and `trace_stat/functionN`, a port of
the CONFIG_FUNCTION_PROFILER part of kernel/trace/ftrace.c and of kernel/trace/trace_stat.c
(the same in v4.5.0 and v4.8.17, which also model the 4.4.0+ trees of legacy and seed).

Both trees are built with CONFIG_FUNCTION_GRAPH_TRACER, so the profiler is a user of the
function graph machinery: register_ftrace_graph() with profile_graph_entry() (a hit) and
profile_graph_return() (the time between push and pop of the return stack), on graph_ops,
which shares global_ops' hashes (set_ftrace_filter chooses what is profiled).  Only one
graph user at a time: the function_graph tracer and the profiler refuse each other with
-EBUSY; the function tracer and the profiler run together.  (The function_profile_call ops
of kernels without the graph tracer is never registered by these trees.)
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generator

from emu.sched import Lock

from ..errors import TracefsError
from ..flags import FTRACE_START_FUNC_RET, FTRACE_STOP_FUNC_RET
from ..ops import FtraceOps
from ..tracer import FTRACE_RETFUNC_DEPTH

if TYPE_CHECKING:
    from ..system import System

MASK64 = (1 << 64) - 1
PAGE_SIZE = 4096
#: struct ftrace_profile with the graph tracer: hlist_node (16) + ip, counter, time, time_squared.
PROFILE_BYTES = 48
#: PROFILES_PER_PAGE: what fits after struct ftrace_profile_page's next and index.
PROFILES_PER_PAGE = (PAGE_SIZE - 16) // PROFILE_BYTES

FUNCTION_STAT_HEADERS = ("  Function                               Hit    Time            Avg             s^2\n"
                         "  --------                               ---    ----            ---             ---\n")


@dataclass(slots=True)
class FtraceProfile:
    """struct ftrace_profile: one function's hits and time on one CPU."""

    ip: int
    counter: int = 0
    time: int = 0
    time_squared: int = 0

    def __repr__(self) -> str:
        return f"<FtraceProfile ip={self.ip:#x} hits={self.counter} time={self.time}>"


@dataclass
class FtraceProfileStat:
    """struct ftrace_profile_stat, per CPU: the records in allocation order (the pages), the
    hash that finds them, and how many the pages can hold (fixed when they are allocated)."""

    hash: dict[int, FtraceProfile] | None = None
    records: list[FtraceProfile] = field(default_factory=list)
    capacity: int = 0
    disabled: int = 0

    def find(self, ip: int) -> FtraceProfile | None:
        """ftrace_find_profiled_func()."""
        return self.hash.get(ip) if self.hash else None

    def alloc(self, ip: int) -> FtraceProfile | None:
        """ftrace_profile_alloc(): the next free record of the pages, or None once all are
        used (the function then goes unprofiled)."""
        self.disabled += 1
        try:
            if self.disabled != 1:  # recursion (NMIs in the kernel)
                return None
            rec = self.find(ip)
            if rec is not None:
                return rec
            if len(self.records) >= self.capacity:
                return None
            rec = FtraceProfile(ip)
            self.records.append(rec)
            self.hash[ip] = rec
            return rec
        finally:
            self.disabled -= 1


def trace_print_graph_duration(ns: int) -> str:
    """trace_print_graph_duration() (kernel/trace/trace_functions_graph.c, v4.5-v4.8.17):
    microseconds, up to 7 digits in all with the nanoseconds after a '.', " us ", then
    blanks to 8 columns."""
    usecs = str(ns // 1000)
    text, width = usecs, len(usecs)
    if width < 7:
        nsecs = f"{ns % 1000:03d}"[:min(5, 8 - width) - 1]  # snprintf's size cut
        text += "." + nsecs
        width += len(nsecs) + 1
    return text + " us " + " " * max(0, 8 - width)


class FunctionProfiler:
    """ftrace_profile_enabled, the per-CPU ftrace_profile_stats and graph_ops."""

    def __init__(self, system: "System"):
        self.system = system
        self.enabled = False  # ftrace_profile_enabled
        self.lock = Lock("ftrace_profile_lock")
        self.stats = [FtraceProfileStat() for _ in system.kernel.cpus]
        #: graph_ops: calls the stub (the graph caller does the work), with global_ops' hashes.
        self.graph_ops = FtraceOps("graph_ops", system.kernel.symbol("ftrace_stub"), func_hash=system.global_ops)
        self._subtime = [[0] * FTRACE_RETFUNC_DEPTH for _ in system.kernel.cpus]
        tracefs = system.tracefs
        tracefs.add("function_profile_enabled", lambda: f"{int(self.enabled)}\n", self.ftrace_profile_write)
        for cpu in range(len(system.kernel.cpus)):
            tracefs.add(f"trace_stat/function{cpu}", lambda c=cpu: self.read_stat(c))

    @property
    def graph_time(self) -> bool:
        """fgraph_graph_time: the function_graph tracer's graph-time option (on at boot; off,
        a function's time leaves out its children's), set by func_graph_set_flag()."""
        options = getattr(self.system.tracefs, "options", None)
        return options is None or options.tracer_on("function_graph", "graph-time")

    # -- function_profile_enabled ---------------------------------------------------------------
    def ftrace_profile_write(self, data: bytes) -> Generator[object, None, None]:
        """ftrace_profile_write(): a decimal number, made 0 or 1; switching on resets every
        CPU's profile and registers the profiler, switching off unregisters it (the counts
        stay readable)."""
        from ..tracefs import kstrtoul

        val = 1 if kstrtoul("function_profile_enabled", data) else 0
        yield from self.lock.acquire()
        try:
            if self.enabled == bool(val):
                return
            if val:
                self.ftrace_profile_init()
                ret = yield from self.register_ftrace_profiler()
                if ret < 0:
                    raise self._error(ret)
                self.enabled = True
            else:
                self.enabled = False
                yield from self.unregister_ftrace_profiler()
        finally:
            self.lock.release()

    def _error(self, ret: int) -> TracefsError:
        if ret == -errno.EBUSY:
            return TracefsError("function_profile_enabled: the function graph is in use (function_graph is the "
                                "current tracer)", errno.EBUSY)
        if ret == -errno.ENODEV:
            return TracefsError("function_profile_enabled: ftrace is disabled after a bug (see dmesg)", errno.ENODEV)
        return TracefsError(f"function_profile_enabled: failed with {errno.errorcode.get(-ret, -ret)}", -ret)

    def ftrace_profile_init(self) -> None:
        """ftrace_profile_init() / ftrace_profile_init_cpu(): a CPU's first enable makes its
        hash and pages (enough pages for ftrace_update_tot_cnt functions, as
        ftrace_profile_pages_init() counts them); later ones reset what is there."""
        for stat in self.stats:
            if stat.hash is not None:
                stat.hash.clear()  # ftrace_profile_reset(): the pages stay, emptied
                stat.records.clear()
                continue
            stat.hash = {}
            pages = max(1, -(-self.system.ftrace.update_tot_cnt // PROFILES_PER_PAGE))
            stat.capacity = pages * PROFILES_PER_PAGE

    def register_ftrace_profiler(self) -> Generator[object, None, int]:
        """register_ftrace_profiler() = register_ftrace_graph(profile_graph_return,
        profile_graph_entry): -EBUSY while another graph user holds it; graph_ops is started
        with FTRACE_START_FUNC_RET.  As in the kernel, a failed ftrace_startup() leaves the
        graph held (ftrace_graph_active is not dropped)."""
        s = self.system
        ftrace, graph = s.ftrace, s.graph
        yield from ftrace.ftrace_lock.acquire()
        try:
            if graph.active or graph.entry_handler is not None:
                return -errno.EBUSY
            graph.return_handler, graph.entry_handler = self.profile_graph_return, self.profile_graph_entry
            ops = self.graph_ops
            ops.filter_hash, ops.notrace_hash = s.global_ops.filter_hash, s.global_ops.notrace_hash
            return (yield from ftrace.ftrace_startup(ops, FTRACE_START_FUNC_RET))
        finally:
            ftrace.ftrace_lock.release()

    def unregister_ftrace_profiler(self) -> Generator[object, None, None]:
        """unregister_ftrace_profiler() = unregister_ftrace_graph()."""
        s = self.system
        ftrace, graph = s.ftrace, s.graph
        yield from ftrace.ftrace_lock.acquire()
        try:
            if graph.entry_handler != self.profile_graph_entry:
                return
            graph.entry_handler = graph.return_handler = None
            yield from ftrace.ftrace_shutdown(self.graph_ops, FTRACE_STOP_FUNC_RET)
        finally:
            ftrace.ftrace_lock.release()

    # -- the callbacks ------------------------------------------------------------------------
    def function_profile_call(self, ip: int, cpu) -> None:
        """function_profile_call(): one more hit for ip on this CPU."""
        if not self.enabled:
            return
        stat = self.stats[cpu.index]
        if stat.hash is None:
            return
        rec = stat.find(ip) or stat.alloc(ip)
        if rec is not None:
            rec.counter += 1

    def profile_graph_entry(self, cpu, func: int, depth: int) -> bool:
        """profile_graph_entry(): a hit, and the call is always hooked for its return."""
        self.function_profile_call(func, cpu)
        if 0 <= depth < FTRACE_RETFUNC_DEPTH:
            self._subtime[cpu.index][depth] = 0  # ftrace_push_return_trace() clears it
        return True

    def profile_graph_return(self, cpu, func: int, calltime: int, rettime: int, depth: int) -> None:
        """profile_graph_return(): the call's time (without its children's when graph-time
        is off) added to the function's total and to the sum of squares."""
        stat = self.stats[cpu.index]
        if stat.hash is None or not self.enabled or not calltime:
            return
        time = rettime - calltime
        if not self.graph_time:
            subtime = self._subtime[cpu.index]
            if depth:
                subtime[depth - 1] += time
            time = time - subtime[depth] if subtime[depth] < time else 0
        rec = stat.find(func)
        if rec is not None:
            rec.time = (rec.time + time) & MASK64
            rec.time_squared = (rec.time_squared + time * time) & MASK64

    # -- trace_stat/functionN ---------------------------------------------------------------------
    def read_stat(self, cpu: int) -> str:
        """The stat file of one CPU: tracing_stat_open()'s sort (stat_seq_init() inserts each
        record into an rbtree, function_stat_cmp() by time, the larger and, among equals, the
        later to the left), then function_stat_headers() and a function_stat_show() a row."""
        stat = self.stats[cpu]
        ordered = sorted(reversed(stat.records), key=lambda r: r.time, reverse=True)
        return FUNCTION_STAT_HEADERS + "".join(self.function_stat_show(rec) for rec in ordered)

    def function_stat_show(self, rec: FtraceProfile) -> str:
        """function_stat_show(): name, hits, and the time, average and s^2 (Welford's sample
        variance, divided by 1000 once here and once more as a duration) as durations.  Like
        the kernel's do_div(), both divisions take the divisor's low 32 bits."""
        if rec.counter == 0:
            return ""
        avg = rec.time // (rec.counter & 0xFFFFFFFF)
        if rec.counter <= 1:
            stddev = 0
        else:
            stddev = (rec.counter * rec.time_squared - rec.time * rec.time) & MASK64
            divisor = (rec.counter * (rec.counter - 1) * 1000) & 0xFFFFFFFF
            stddev = stddev // divisor if divisor else 0  # the kernel would divide by zero
        hit = self.system.kernel.kallsyms.lookup(rec.ip)
        name = hit[0].name if hit else f"{rec.ip:x}"
        return (f"  {name[:30]:<30}  {rec.counter:10d}    {trace_print_graph_duration(rec.time)}    "
                f"{trace_print_graph_duration(avg)}    {trace_print_graph_duration(stddev)}\n")
