"""How the explorer follows what each step of a run touches (emu.footprint), as a choice:

  page    guest code's accesses are the pages it touched (emu.machine reports each TLB
          miss of the step by page and kind); the host state guest code reaches through
          host hooks is three watched tokens (below).  The default.
  coarse  guest code touches everything.  Kept as the oracle: on every scenario and variant
          both must find the same final states and failures (tests/test_footprints.py).

The host's hooks inside guest code, and what they see of the host's state:
  HOOKS  the tracer's ops callbacks (ftrace_ops_list_func, function_trace_call and the other
         ops handlers: probes, pid filter, stack tracer, profiler) and function_graph's
         entry and return hooks.  In the kernel they read ftrace's
         ops and hashes without ftrace_lock (under RCU / preempt-disable), and the tracers'
         options and flags.  Every such hook reads HOOKS and writes TRACE (the ring buffer,
         and the tracers' own counters, which files under tracefs show); hook_state() is the
         value behind HOOKS, so any step that changes it, host code or a hook, writes it.
  AUDIT  the invariants' call audit (CallAudit): at each function entry it asks whether the
         call must be traced (global_ops on the list, enabled, neither being added nor
         removed, no update under way, tracing on, ftrace_enabled, the ip in its hashes)
         and notes ftrace's generation; audit_view() is what those answers depend on, so
         a step that changes a field but not an answer (updating falling to 0 while
         global_ops is still being added) is no write.
  INT3   ftrace_int3_handler(): modifying_ftrace_code, and whether the address is a record
         (or the trampoline site being rewritten).

A hook may change that state too (a traceoff probe flips tracing_on), and host code
reads it under ftrace_lock or trace_types_lock: a step in which a hook ran and hook_state()
changed writes HOOKS_BY_HOOKS as well, which every step holding one of those locks reads.
(Host steps are ordered among themselves by the tokens their own code reports; HOOKS is
read by hooks alone, so the tokens here add no order between two host steps.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..flags import FTRACE_OPS_FL_ADDING, FTRACE_OPS_FL_REMOVING
from ..hash import FtraceHash

if TYPE_CHECKING:
    from ..system import System

FOOTPRINTS = ("page", "coarse")

HOOKS = ("hooks",)
HOOKS_BY_HOOKS = ("hooks", "by hooks")
AUDIT = ("audit",)
INT3 = ("int3",)
TRACE = ("trace",)
#: The locks under which host code changes what the hooks read.
HOOK_STATE_LOCKS = ("ftrace_lock", "trace_types_lock")

_PLAIN = (bool, int, float, str, bytes, type(None))


def _small(obj: object) -> tuple:
    """A small object's attributes by value: plain values as they are, sets and lists of
    plain values by content, anything else by identity."""
    if obj is None:
        return ()
    out = []
    for k, v in vars(obj).items():
        if isinstance(v, (set, frozenset)):
            v = frozenset(v)
        elif isinstance(v, list):
            v = tuple(v)
        elif not isinstance(v, _PLAIN):
            v = id(v)
        out.append((k, v))
    return tuple(out)


def _hash(h: FtraceHash | None) -> object:
    return None if h is None else (id(h), h.version)


def hook_state(system: "System") -> tuple:
    """The host state the hooks read (or change, for host code to read), as one value:

    - ftrace_ops_list_func / the ops callback: the ops list, function_trace_op, and whether
      each ops is enabled, its hashes (by identity and version: FtraceHash counts its
      changes), handler and private data (a trace array's pid filter);
    - function_trace_call and the trace arrays' callbacks: tracing_on, options, clock;
    - ftrace_pid_func: the pid filter; the probes' table; the profiler's and the stack
      tracer's switches;
    - function_graph's hooks: tracing_on, active, its handlers, filters, depth, task test.
    """
    f, t, g = system.ftrace, system.tracer, system.graph
    ops = tuple((op, op.enabled, op.handler, op.private, op.func_hash, _hash(op.filter_hash), _hash(op.notrace_hash))
                for op in f.ops_list)
    arrays = []
    tracefs = system.tracefs
    for array in (tracefs.top, *tracefs.instances.values()):
        opts = array.options
        arrays.append((array.current_tracer, array.tracing_on, frozenset(opts.flags),
                       tuple((k, frozenset(v)) for k, v in sorted(opts.tracer_flags.items())),
                       _small(array.clock), _small(array.pids)))
    return (ops, f.function_trace_op, t.tracing_on, _small(getattr(f, "pids", None)), _small(getattr(system, "probes", None)),
            system.profiler.enabled, system.stack_tracer.stack_tracer_enabled,
            (g.tracing_on, g.active, g.entry_test, g.entry_handler, g.return_handler, g.thresh_ns, g.trace_task,
             tuple(g.graph_funcs), tuple(g.notrace_funcs), g.max_depth),
            tuple(arrays))


def int3_state(system: "System") -> tuple:
    f = system.ftrace
    return f.modifying_ftrace_code, f.arch.ftrace_update_func, len(f.records)


def audit_view(system: "System", audit) -> tuple:
    """What CallAudit's answers depend on (CallAudit._counting() and settle()): whether a call
    counts, apart from its ip; the hashes that decide for the ip; the generation an entry
    is noted with; which call sites it hooks."""
    ops, f = system.global_ops, system.ftrace
    counting = (ops in f.ops_list and ops.enabled and not ops.flags & (FTRACE_OPS_FL_ADDING | FTRACE_OPS_FL_REMOVING)
                and f.updating == 0 and system.tracer.tracing_on and f.last_ftrace_enabled)
    return counting, f.generation, _hash(ops.filter_hash), _hash(ops.notrace_hash), len(audit.hooks)
