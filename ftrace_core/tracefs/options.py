"""trace_options and options/: the trace array's flags (TRACE_ITER_*) and each tracer's own
options, as kernel/trace/trace.c keeps them (trace_set_options(), set_tracer_flag(),
set_tracer_option(), tracing_trace_options_show(), create_trace_options_dir(),
create_trace_option_files(), v4.4-v4.8), and what a change sets off.

What the options mean for the printed trace is output.TraceFormat's business; this module
only holds them and says which are set.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Iterator

from ..errors import TracefsError
from ..kernels import EVENT_FORK_OPTION, TRACER_OPTION_OWN_SET_FLAG
from ..output import GRAPH_DEFAULT_FLAGS, TraceFormat

if TYPE_CHECKING:
    from .array import TraceArray

#: The trace array's flags in bit order (TRACE_FLAGS in kernel/trace/trace.h, with
#: CONFIG_FUNCTION_TRACER, CONFIG_FUNCTION_GRAPH_TRACER and CONFIG_STACKTRACE, no branch
#: tracer); v4.7 put event-fork after markers.
_CORE = ("print-parent", "sym-offset", "sym-addr", "verbose", "raw", "hex", "bin", "block", "trace_printk",
         "annotate", "userstacktrace", "sym-userobj", "printk-msg-only", "context-info", "latency-format",
         "record-cmd", "overwrite", "disable_on_free", "irq-info", "markers")
_CORE_TAIL = ("function-trace", "display-graph", "stacktrace")
#: TRACE_DEFAULT_FLAGS (kernel/trace/trace.c): FUNCTION_DEFAULT_FLAGS and these.
DEFAULT_ON = frozenset({"print-parent", "trace_printk", "annotate", "context-info", "record-cmd", "overwrite",
                        "irq-info", "markers", "function-trace"})
#: Each tracer's own options in order (its struct tracer_opt table): nop's two test
#: options (trace_nop.c), the function tracer's func_stack_trace (trace_functions.c) and
#: the graph tracer's (trace_functions_graph.c); and which are on at boot.
TRACER_OPTIONS: dict[str, tuple[str, ...]] = {
    "nop": ("test_nop_accept", "test_nop_refuse"),
    "function": ("func_stack_trace",),
    "function_graph": ("funcgraph-overrun", "funcgraph-cpu", "funcgraph-overhead", "funcgraph-proc",
                       "funcgraph-duration", "funcgraph-abstime", "funcgraph-irqs", "funcgraph-tail", "sleep-time",
                       "graph-time"),
}
TRACER_DEFAULTS: dict[str, frozenset[str]] = {"nop": frozenset(), "function": frozenset(),
                                              "function_graph": GRAPH_DEFAULT_FLAGS}
#: tracing_trace_options_write() and trace_options_write(): a write must fit in 64 bytes.
_WRITE_MAX = 63


def core_options(has: Callable[[str], bool]) -> tuple[str, ...]:
    """The core options of a tree, in the order trace_options lists them."""
    return _CORE + (("event-fork",) if has(EVENT_FORK_OPTION) else ()) + _CORE_TAIL


class TraceOptions:
    """The options of one trace array: core flags and every tracer's flags (they persist
    while another tracer is current, as the kernel's static tracer_flags do)."""

    def __init__(self, array: "TraceArray", flags: set[str] | None = None):
        self.array = array
        system = array.system
        self.has = system.ftrace.kernel.has
        self.core = core_options(self.has)
        self.flags = set(DEFAULT_ON) if flags is None else set(flags)  # instance_mkdir() copies the top's
        # struct tracer's flags are the tracer's own, shared by every trace array
        self.tracer_flags = ({tracer: set(on) for tracer, on in TRACER_DEFAULTS.items()} if array.name is None
                             else array.tree.top.options.tracer_flags)

    def on(self, name: str) -> bool:
        return name in self.flags

    def tracer_on(self, tracer: str, name: str) -> bool:
        return name in self.tracer_flags[tracer]

    def format(self) -> TraceFormat:
        """How the trace prints under these options."""
        clock = self.array.clock
        return TraceFormat(
            print_parent=self.on("print-parent"), sym_offset=self.on("sym-offset"), sym_addr=self.on("sym-addr"),
            verbose=self.on("verbose"), raw=self.on("raw"), hex=self.on("hex"), bin=self.on("bin"),
            printk_msg_only=self.on("trace_printk") and self.on("printk-msg-only"),
            context_info=self.on("context-info"), latency=self.on("latency-format"), irq_info=self.on("irq-info"),
            graph=frozenset(self.tracer_flags["function_graph"]), in_ns=clock.in_ns)

    # -- trace_options ------------------------------------------------------------------------
    def show(self) -> str:
        """tracing_trace_options_show(): every core option, then the current tracer's."""
        tracer = self.array.current_tracer
        lines = [name if name in self.flags else f"no{name}" for name in self.core]
        lines += [name if name in self.tracer_flags[tracer] else f"no{name}" for name in TRACER_OPTIONS[tracer]]
        return "".join(line + "\n" for line in lines)

    def write(self, data: bytes) -> Iterator[object]:
        """tracing_trace_options_write() then trace_set_options(): one option, `no` in front
        to clear it; a core option first, else one of the current tracer's; -EINVAL for
        any other name.  The whole write is the option (no tokenizing)."""
        if len(data) > _WRITE_MAX:
            raise TracefsError(f"trace_options: a write takes at most {_WRITE_MAX} bytes", errno.EINVAL)
        text = data.decode("latin-1").strip()
        name, enable = (text[2:], False) if text.startswith("no") else (text, True)
        yield from self.array.trace_types_lock.acquire()
        try:
            if name in self.core:
                ret = self.set_tracer_flag(name, enable)
            else:
                tracer = self.array.current_tracer
                if name not in TRACER_OPTIONS[tracer]:
                    raise TracefsError(f"trace_options: {text!r}: no option {name!r} (the core options, and the "
                                       f"{tracer} tracer's: {', '.join(TRACER_OPTIONS[tracer]) or 'none'})",
                                       errno.EINVAL)
                ret = yield from self.set_tracer_option(tracer, name, enable)
        finally:
            self.array.trace_types_lock.release()
        if ret:
            raise TracefsError(f"trace_options: {text!r} refused", -ret)

    def set_tracer_flag(self, name: str, enable: bool) -> int:
        """set_tracer_flag(): nothing if unchanged; no tracer here has a flag_changed
        callback to refuse.  overwrite switches the ring buffer's mode; the others take
        effect where they are read (the printers, trace_marker, free_buffer); record-cmd
        only concerns trace events' comms (trace_event_enable_cmd_record()), and this kernel
        has no event that can be enabled."""
        if (name in self.flags) == enable:
            return 0
        if enable:
            self.flags.add(name)
        else:
            self.flags.discard(name)
        if name == "overwrite":
            self.array.buffer.overwrite = enable  # ring_buffer_change_overwrite()
        return 0

    def set_tracer_option(self, owner: str, name: str, enable: bool) -> Iterator[object]:
        """__set_tracer_option(): the tracer's set_flag decides, then the flag changes.
        Until v4.6 the set_flag asked is the current tracer's even when the option file
        belongs to another tracer (tr->current_trace); from v4.6 it is the option's own
        (tracer_flags->trace)."""
        asked = owner if self.has(TRACER_OPTION_OWN_SET_FLAG) else self.array.current_tracer
        bit = TRACER_OPTIONS[owner].index(name)
        ret = yield from self._set_flag(asked, owner, bit, enable)
        if ret:
            return ret
        if enable:
            self.tracer_flags[owner].add(name)
        else:
            self.tracer_flags[owner].discard(name)
        return 0

    def _set_flag(self, tracer: str, owner: str, bit: int, enable: bool) -> Iterator[object]:
        """The tracers' set_flag callbacks, called with the option's bit (1 << its index in
        its owner's table, so nop's test options share bits with the others' options)."""
        system = self.array.system
        if tracer == "nop":  # nop_set_flag(): bit 0 accepts, bit 1 refuses
            if bit == 0:
                system.env.printk(f"nop_test_accept flag set to {int(enable)}: we accept. Now cat trace_options "
                                  "to see the result\n")
            elif bit == 1:
                system.env.printk(f"nop_test_refuse flag set to {int(enable)}: we refuse.Now cat trace_options "
                                  "to see the result\n")
                return -errno.EINVAL
            return 0
        if tracer == "function":  # func_set_flag(): only func_stack_trace's bit is known
            if bit != 0:
                return -errno.EINVAL
            if enable == self.tracer_on("function", "func_stack_trace") or self.array.current_tracer != "function":
                return 0  # nothing to change now: function_trace_init() reads the flag
            if self.array.name is not None:
                return 0  # only the top level traces stacks (function_trace_init()); kept as a flag
            ops = system.global_ops
            yield from system.ftrace.unregister_ftrace_function(ops)
            system.configure_global_ops(graph=False, stack_trace=enable)
            yield from system.ftrace.register_ftrace_function(ops)
            return 0
        # func_graph_set_flag(): funcgraph-irqs, sleep-time and graph-time switch state the
        # graph entry and the profiler read (here: the flags themselves); none refuses.
        return 0

    # -- options/ -----------------------------------------------------------------------------
    def read_core(self, name: str) -> str:
        """trace_options_core_read(): 1 or 0."""
        return "1\n" if name in self.flags else "0\n"

    def write_core(self, name: str, data: bytes) -> Iterator[object]:
        """trace_options_core_write(): 0 or 1 (-EINVAL otherwise) through set_tracer_flag()."""
        from . import kstrtoul

        value = kstrtoul(f"options/{name}", data)
        if value not in (0, 1):
            raise TracefsError(f"options/{name}: {value}: expected 0 or 1", errno.EINVAL)
        yield from self.array.trace_types_lock.acquire()
        try:
            self.set_tracer_flag(name, bool(value))
        finally:
            self.array.trace_types_lock.release()

    def write_tracer_option(self, owner: str, name: str, data: bytes) -> Iterator[object]:
        """trace_options_write(): 0 or 1; a change goes through __set_tracer_option()."""
        from . import kstrtoul

        value = kstrtoul(f"options/{name}", data)
        if value not in (0, 1):
            raise TracefsError(f"options/{name}: {value}: expected 0 or 1", errno.EINVAL)
        if bool(value) == self.tracer_on(owner, name):
            return
        yield from self.array.trace_types_lock.acquire()
        try:
            ret = yield from self.set_tracer_option(owner, name, bool(value))
        finally:
            self.array.trace_types_lock.release()
        if ret:
            raise TracefsError(f"options/{name}: refused by the {self.array.current_tracer} tracer", -ret)


#: TOP_LEVEL_TRACE_FLAGS (kernel/trace/trace.c): options only the top level's options/ holds.
TOP_LEVEL_ONLY = ("trace_printk", "printk-msg-only", "record-cmd")


def option_files(has: Callable[[str], bool]) -> dict[str, int]:
    """Every file options/ holds in the top-level trace array, each 0644: the core options
    (create_trace_options_dir()) and every registered tracer's (create_trace_option_files())."""
    names = list(core_options(has)) + [name for opts in TRACER_OPTIONS.values() for name in opts]
    return {f"options/{name}": 0o644 for name in names}


def install(array: "TraceArray", flags: set[str] | None = None) -> TraceOptions:
    """trace_options and options/: an instance's leaves out TOP_LEVEL_TRACE_FLAGS and the
    options of tracers it may not use (trace_ok_for_array())."""
    options = TraceOptions(array, flags)
    array.add("trace_options", options.show, options.write, lock="trace_types_lock", mode=0o644)
    for name in options.core:
        if array.name is not None and name in TOP_LEVEL_ONLY:
            continue
        array.add(f"options/{name}", lambda n=name: options.read_core(n),
                  lambda data, n=name: options.write_core(n, data), mode=0o644)
    for owner, names in TRACER_OPTIONS.items():
        if owner not in array.tracers:
            continue
        for name in names:
            array.add(f"options/{name}", lambda o=owner, n=name: "1\n" if options.tracer_on(o, n) else "0\n",
                      lambda data, o=owner, n=name: options.write_tracer_option(o, n, data), mode=0o644)
    return options
