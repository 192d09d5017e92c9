"""The kernels ftrace-emu models: each variant is a real kernel tree (a commit of Linux's
history), and the port asks the variant, never a variant's name, whether a behaviour applies.

A behaviour that changed in the history of these paths is a `Change`: the commit that made it,
the kernel file and function it lives in, and what it does.  A variant has every change of
the variants before it plus its own, so `kernel.has(X)` is "does this tree contain commit X's
change".  Code shared by all variants follows v4.5-v4.8, where the trees agree (checked
function by function against the v4.4.1, v4.5.0, v4.6.2, v4.7.4 and v4.8.17 release trees).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# -- the changes, in the order they landed ---------------------------------------------------
#: b7ffffbb46f2: module records are created FTRACE_FL_DISABLED; __ftrace_hash_rec_update and
#: ftrace_check_record skip them; ftrace_module_enable() counts and enables them.
DISABLED_RECORDS = "disabled-records"
#: 7dcd182bec27: ftrace_module_enable() from complete_formation(), after module_enable_ro().
ENABLE_AFTER_RO = "enable-after-ro"
#: 7dcd182bec27: no module notifier; load_module()/delete_module() call ftrace_release_mod().
RELEASE_WITHOUT_NOTIFIER = "release-without-notifier"
#: v4.6: FTRACE_UPDATE_CALLS only when __ftrace_hash_rec_update() changed a record.
UPDATE_CALLS_ON_CHANGE = "update-calls-on-change"
#: 7e545d6eca20 (v4.6): ftrace_module_enable() moves into prepare_coming_module().
ENABLE_IN_PREPARE_COMING = "enable-in-prepare-coming"
#: v4.8.15 (a v4.9 fix, backported): every walk of the records skips DISABLED ones,
#: ftrace_shutdown()'s sanity check and match_records() included.
DISABLED_IGNORED_EVERYWHERE = "disabled-ignored-everywhere"
#: v4.6: hash_64() multiplies by GOLDEN_RATIO_64 (was GOLDEN_RATIO_PRIME_64), which moves the
#: function probes between ftrace_func_hash's buckets, and so their order in set_ftrace_filter.
HASH_GOLDEN_RATIO_64 = "hash-golden-ratio-64"
#: v4.7: set_ftrace_pid belongs to a trace array (a pid bitmap, tr->function_pids) and
#: ftrace_pid_func() reads a per-CPU ftrace_ignore_pid that a sched_switch probe keeps.
PID_PER_TRACE_ARRAY = "pid-per-trace-array"
#: v4.6: a tracer's option file asks its own tracer's set_flag (tracer_flags->trace), not the
#: current tracer's (tr->current_trace, as v4.4 and v4.5 do).
TRACER_OPTION_OWN_SET_FLAG = "tracer-option-own-set-flag"
#: v4.7: the event-fork option (set_event_pid follows forks) joins the core options.
EVENT_FORK_OPTION = "event-fork-option"
#: v4.7-v4.8 (after v4.6.2, checked): funcgraph_entry/funcgraph_exit are FTRACE_ENTRY_PACKED and
#: struct ftrace_graph_ret is packed with overrun after func: other offsets in the ring buffer.
GRAPH_ENTRIES_PACKED = "graph-entries-packed"


@dataclass(frozen=True)
class Change:
    """One behaviour a commit changed: where it lives and what it does."""

    feature: str
    commit: str
    file: str
    function: str
    summary: str


@dataclass(frozen=True)
class KernelTree:
    """A variant: the tree it models and what it changed relative to its predecessor."""

    name: str
    commit: str
    subject: str
    release: str  # the release the commit first shipped in
    uname: str  # what the boot banner prints as the version
    summary: str
    changes: tuple[Change, ...] = ()
    features: frozenset[str] = field(default=frozenset())

    def has(self, feature: str) -> bool:
        return feature in self.features

    def __repr__(self) -> str:
        return f"<KernelTree {self.name} {self.commit}>"


def _chain(*trees: KernelTree) -> dict[str, KernelTree]:
    """Each tree has its own changes and every earlier tree's."""
    out: dict[str, KernelTree] = {}
    have: frozenset[str] = frozenset()
    for tree in trees:
        have = have | {c.feature for c in tree.changes}
        out[tree.name] = KernelTree(tree.name, tree.commit, tree.subject, tree.release, tree.uname, tree.summary,
                                    tree.changes, have)
    return out


SEED = "b7ffffbb46f2"
FIXED = "7dcd182bec27"
PREPARE_COMING = "7e545d6eca20"

KERNELS = _chain(
    KernelTree(
        "legacy", f"{SEED}^", "(the parent of the seed commit)", "v4.5", "4.4.0+",
        "before the seed commit: a loading module's records are counted and enabled inside "
        "ftrace_update_code(), while its text is still writable"),
    KernelTree(
        "seed", SEED, "ftrace: Add infrastructure for delayed enabling of module functions", "v4.5", "4.4.0+",
        "module records start DISABLED; ftrace_module_enable() still runs at once from ftrace_module_init()",
        (Change(DISABLED_RECORDS, SEED, "kernel/trace/ftrace.c", "ftrace_update_code",
                "a module's records are created FTRACE_FL_DISABLED; __ftrace_hash_rec_update() and "
                "ftrace_check_record() skip them"),
         Change(DISABLED_RECORDS, SEED, "kernel/trace/ftrace.c", "ftrace_module_init",
                "calls the new ftrace_module_enable() straight after ftrace_process_locs(): the race stays"),
         Change(DISABLED_RECORDS, SEED, "kernel/trace/ftrace.c", "ops_references_rec",
                "an ops tracing every function references the record (1, was 0 and counted apart)"))),
    KernelTree(
        "fixed", FIXED, "ftrace/module: remove ftrace module notifier", "v4.5", "4.5.0",
        "ftrace_module_enable() runs from complete_formation(), after the module text is read-only",
        (Change(ENABLE_AFTER_RO, FIXED, "kernel/module.c", "complete_formation",
                "calls ftrace_module_enable() after module_enable_ro() and the COMING state"),
         Change(ENABLE_AFTER_RO, FIXED, "kernel/trace/ftrace.c", "ftrace_module_init",
                "no longer calls ftrace_module_enable()"),
         Change(RELEASE_WITHOUT_NOTIFIER, FIXED, "kernel/module.c", "delete_module",
                "calls ftrace_release_mod() directly after the GOING notifier (ftrace's notifier is gone)"))),
    KernelTree(
        "v4.8.17", "v4.8.17", "Linux 4.8.17 (stable)", "v4.8.17", "4.8.17",
        "the first tree here whose walks of the records all skip DISABLED ones: ftrace_shutdown()'s "
        "check no longer kills ftrace while a module loads (the fix went into v4.9 and was backported "
        "to v4.8.15; its mainline id is not recoverable from the release trees)",
        (Change(UPDATE_CALLS_ON_CHANGE, "v4.6", "kernel/trace/ftrace.c", "ftrace_startup / ftrace_shutdown",
                "set FTRACE_UPDATE_CALLS only when __ftrace_hash_rec_update() reports a site to change"),
         Change(TRACER_OPTION_OWN_SET_FLAG, "v4.6", "kernel/trace/trace.c", "__set_tracer_option",
                "calls the set_flag of the tracer that owns the option (tracer_flags->trace), not the current one"),
         Change(EVENT_FORK_OPTION, "v4.7", "kernel/trace/trace.h", "TRACE_FLAGS",
                "adds the event-fork option after markers: trace_options and options/ list it"),
         Change(ENABLE_IN_PREPARE_COMING, PREPARE_COMING, "kernel/module.c", "prepare_coming_module",
                "ftrace_module_enable() moves from complete_formation() into prepare_coming_module()"),
         Change(DISABLED_IGNORED_EVERYWHERE, "v4.8.15", "kernel/trace/ftrace.c", "ftrace_shutdown",
                "the sanity check reads rec->flags & ~FTRACE_FL_DISABLED: a loading module no longer kills ftrace"),
         Change(DISABLED_IGNORED_EVERYWHERE, "v4.8.15", "kernel/trace/ftrace.c", "match_records",
                "filters skip DISABLED records (as do probes, set_graph_function and the ipmodify check)"),
         Change(DISABLED_IGNORED_EVERYWHERE, "v4.8.15", "kernel/trace/ftrace.c", "register_ftrace_function_probe",
                "a probe command skips DISABLED records: no probe on a module still loading"),
         Change(HASH_GOLDEN_RATIO_64, "v4.6", "include/linux/hash.h", "hash_64",
                "multiplies by GOLDEN_RATIO_64 (0x61c8864680b583eb, was 0x9e37fffffffc0001): function probes "
                "land in other ftrace_func_hash buckets and list in another order"),
         Change(PID_PER_TRACE_ARRAY, "v4.7", "kernel/trace/ftrace.c", "ftrace_pid_write",
                "set_ftrace_pid fills the trace array's pid bitmap (trace_pid_write(): any pid below pid_max, "
                "several a write, no check that a task has it) instead of a global list of struct pid"),
         Change(PID_PER_TRACE_ARRAY, "v4.7", "kernel/trace/ftrace.c", "ftrace_pid_func",
                "tests the CPU's ftrace_ignore_pid, set by ftrace_filter_pid_sched_switch_probe() at each "
                "switch, instead of the current task's trace flag"),
         Change(GRAPH_ENTRIES_PACKED, "v4.7-v4.8", "kernel/trace/trace_entries.h", "FTRACE_ENTRY_PACKED",
                "funcgraph_entry and funcgraph_exit are packed, struct ftrace_graph_ret with overrun after func: "
                "20 and 44 bytes in the ring buffer (were 24 and 48), and their format files say so"))),
)

VARIANTS: tuple[str, ...] = tuple(KERNELS)


def kernel_tree(name: str) -> KernelTree:
    """The variant called name, or a ValueError listing the variants."""
    try:
        return KERNELS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}: expected one of {', '.join(VARIANTS)}") from None
