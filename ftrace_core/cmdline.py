"""The kernel command line's tracing options: `ftrace=`, `ftrace_filter=`, `ftrace_notrace=`,
`ftrace_graph_filter=`, `ftrace_graph_notrace=`, `ftrace_dump_on_oops[=orig_cpu]`,
`trace_options=`, `trace_clock=` and `trace_buf_size=`.

Parsing follows init/main.c and kernel/params.c (v4.5.0 and v4.8.17 agree): next_arg() splits
the line (quotes allowed), `--` ends the kernel's part, and each parameter is offered to the
__setup() handlers whose name it starts with (obsolete_checksetup(), '-' and '_' alike).  The
handlers (kernel/trace/trace.c, kernel/trace/ftrace.c, the same in both trees) only store
strings; they are acted on where the kernel acts on them: the clock and the options when the
trace buffers are allocated, the filters in ftrace_init() (set_ftrace_early_filters()), the
tracer when it registers, and a tracer that never registered is reported at late_initcall.
None of it fails the boot: what the kernel warns about goes to dmesg, the rest is ignored.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generator

from emu.sched import run_to_completion

from .errors import FtraceError
from .kstr import memparse
from .tracefs.graph import ftrace_set_func
from .tracefs.regex import match_records

if TYPE_CHECKING:
    from .system import System

#: What a machine boots with when no command line is given (the guest's boot_command_line).
DEFAULT_CMDLINE = "console=ttyS0"
#: The guest's char boot_command_line[256], NUL included (x86's COMMAND_LINE_SIZE is 2048).
COMMAND_LINE_ROOM = 255
#: MAX_TRACER_SIZE (kernel/trace/trace.c): the buffers of ftrace=, trace_options=, trace_clock=.
MAX_TRACER_SIZE = 100
#: enum ftrace_dump_mode's values, as ftrace_dump_on_oops holds them.
DUMP_ALL, DUMP_ORIG = 1, 2
#: The order tracers register at boot: nop from tracer_alloc_buffers() (trace_init()), then the
#: core_initcalls init_function_trace() and init_graph_trace().
REGISTER_ORDER = ("nop", "function", "function_graph")


class CmdlineError(FtraceError):
    """A command line this machine cannot boot with (the kernel has no such limits)."""


def _isspace(ch: str) -> bool:
    return ch in " \t\n\r\v\f"


def next_arg(args: str) -> tuple[str, str | None, str]:
    """next_arg() (kernel/params.c, v4.5.0 and v4.8.17): the next `param` or `param=val`
    (a leading quote on the whole or on the value is dropped, with its closing one), and
    the rest of the line without leading blanks."""
    in_quote = quoted = False
    if args.startswith('"'):
        args = args[1:]
        in_quote = quoted = True
    i, equals = 0, 0
    while i < len(args):
        if _isspace(args[i]) and not in_quote:
            break
        if equals == 0 and args[i] == "=":
            equals = i
        if args[i] == '"':
            in_quote = not in_quote
        i += 1
    word, rest = args[:i], args[i + 1:] if i < len(args) else ""
    if quoted and word.endswith('"'):
        word = word[:-1]
    if not equals:
        param, val = word, None
    else:
        param, val = word[:equals], word[equals + 1:]
        if val.startswith('"'):
            val = val[1:]
            if val.endswith('"'):
                val = val[:-1]
    return param, val, rest.lstrip(" \t\n\r\v\f")


def parse_args(cmdline: str) -> list[str]:
    """parse_args("Booting kernel", ...) up to `--`: each parameter as unknown_bootoption()
    hands it to obsolete_checksetup() ("param=val", after repair_env_string())."""
    out = []
    args = cmdline.lstrip(" \t\n\r\v\f")
    while args:
        param, val, args = next_arg(args)
        if val is None and param == "--":
            break
        out.append(param if val is None else f"{param}={val}")
    return out


def parameqn(a: str, b: str, n: int) -> bool:
    """parameqn(): the first n characters equal, '-' and '_' counting as the same."""
    if len(a) < n or len(b) < n:
        return False
    return a[:n].replace("-", "_") == b[:n].replace("-", "_")


@dataclass
class BootOptions:
    """What the __setup() handlers stored: the kernel's __initdata buffers and flags."""

    cmdline: str = DEFAULT_CMDLINE
    bootup_tracer: str | None = None  # default_bootup_tracer
    ftrace_filter: str = ""  # ftrace_filter_buf
    ftrace_notrace: str = ""  # ftrace_notrace_buf
    graph_filter: str = ""  # ftrace_graph_buf
    graph_notrace: str = ""  # ftrace_graph_notrace_buf
    dump_on_oops: int = 0  # ftrace_dump_on_oops
    trace_options: str = ""  # trace_boot_options_buf
    trace_clock: str | None = None  # trace_boot_clock
    trace_buf_size: int | None = None  # trace_buf_size, when set


# -- the __setup() handlers: each returns 1 when it took the parameter, as the kernel's do ----
def _set_cmdline_ftrace(opts: BootOptions, s: str) -> int:
    """set_cmdline_ftrace(): the tracer to start when it registers."""
    opts.bootup_tracer = s[:MAX_TRACER_SIZE - 1]
    return 1


def _set_ftrace_dump_on_oops(opts: BootOptions, s: str) -> int:
    """set_ftrace_dump_on_oops(): bare (or anything not '=...'), every CPU's buffer;
    `=orig_cpu`, the oopsing CPU's; any other value is not taken."""
    if not s.startswith("=") or len(s) == 1:
        opts.dump_on_oops = DUMP_ALL
        return 1
    if s[1:] == "orig_cpu":
        opts.dump_on_oops = DUMP_ORIG
        return 1
    return 0


def _set_trace_boot_options(opts: BootOptions, s: str) -> int:
    """set_trace_boot_options(): kept for apply_trace_boot_options() (returns 0, as the
    kernel's does, so the parameter also reaches init's environment)."""
    opts.trace_options = s[:MAX_TRACER_SIZE - 1]
    return 0


def _set_trace_boot_clock(opts: BootOptions, s: str) -> int:
    """set_trace_boot_clock(): kept for tracer_alloc_buffers() (returns 0, as the kernel's)."""
    opts.trace_clock = s[:MAX_TRACER_SIZE - 1]
    return 0


def _set_buf_size(opts: BootOptions, s: str) -> int:
    """set_buf_size(): memparse()d bytes a CPU; 0 (or no number) is not taken."""
    size = memparse(s)
    if size == 0:
        return 0
    opts.trace_buf_size = size
    return 1


def _store(field: str) -> Callable[[BootOptions, str], int]:
    """set_ftrace_filter() / set_ftrace_notrace() / set_graph_function() /
    set_graph_notrace_function(): the text kept for set_ftrace_early_filters()."""
    def setup(opts: BootOptions, s: str) -> int:
        setattr(opts, field, s)
        return 1
    return setup


#: The __setup() table of kernel/trace/ (v4.5.0, v4.8.17), the parameters this machine models.
SETUP: tuple[tuple[str, Callable[[BootOptions, str], int]], ...] = (
    ("ftrace=", _set_cmdline_ftrace),
    ("ftrace_dump_on_oops", _set_ftrace_dump_on_oops),
    ("trace_options=", _set_trace_boot_options),
    ("trace_clock=", _set_trace_boot_clock),
    ("trace_buf_size=", _set_buf_size),
    ("ftrace_notrace=", _store("ftrace_notrace")),
    ("ftrace_filter=", _store("ftrace_filter")),
    ("ftrace_graph_filter=", _store("graph_filter")),
    ("ftrace_graph_notrace=", _store("graph_notrace")),
)


def obsolete_checksetup(opts: BootOptions, line: str) -> bool:
    """obsolete_checksetup() (init/main.c): every handler whose name starts the parameter gets
    what follows the name, until one takes it."""
    for name, setup in SETUP:
        if parameqn(line, name, len(name)) and setup(opts, line[len(name):]):
            return True
    return False


def parse_cmdline(cmdline: str | None) -> BootOptions:
    """The tracing options of a kernel command line (None: the default line).  Parameters that
    are not tracing's are the rest of the kernel's business and are left alone, as are
    values the handlers do not take; only a line longer than the guest's boot_command_line
    is refused."""
    text = DEFAULT_CMDLINE if cmdline is None else cmdline
    if "\0" in text or "\n" in text:
        raise CmdlineError(f"kernel command line {text!r}: a NUL or newline cannot be part of it")
    if len(text.encode()) > COMMAND_LINE_ROOM:
        raise CmdlineError(f"kernel command line is {len(text.encode())} bytes; this kernel's boot_command_line "
                           f"holds {COMMAND_LINE_ROOM}")
    opts = BootOptions(cmdline=text)
    for line in parse_args(text):
        obsolete_checksetup(opts, line)
    return opts


# -- acting on them at boot -------------------------------------------------------------------
def _strsep(text: str) -> list[str]:
    """strsep(&buf, ","): every comma-separated piece, empty ones included."""
    return text.split(",")


def _write_ignoring(system: "System", name: str, value: str) -> bool:
    """A tracefs write whose failure the boot code ignores; whether it succeeded."""
    try:
        system.tracefs.write(name, value)
    except FtraceError:
        return False
    return True


def apply_trace_boot_options(system: "System", opts: BootOptions) -> None:
    """apply_trace_boot_options(): trace_set_options() on each comma-separated option, its
    errors ignored (an unknown option is silently skipped)."""
    for option in _strsep(opts.trace_options):
        if option:
            _write_ignoring(system, "trace_options", option)


def ftrace_set_early_filter(system: "System", buf: str, enable: bool) -> Generator[object, None, None]:
    """ftrace_set_early_filter(): each comma-separated glob through ftrace_set_regex(ops, func,
    len, reset=0, enable) on global_ops: ftrace_set_hash() copies the hash, matches the glob
    (ftrace_match_records(): no `:command`), and moves the copy in under ftrace_lock only if
    something matched; a glob matching nothing is -EINVAL, which the boot code ignores."""
    ftrace, ops = system.ftrace, system.global_ops
    for func in _strsep(buf):
        if ftrace.ftrace_disabled:  # ftrace_set_hash(): -ENODEV
            continue
        new = (ops.filter_hash if enable else ops.notrace_hash).copy()
        found = yield from match_records(system, new, func, None)
        if not found:
            continue
        yield from ftrace.ftrace_lock.acquire()
        try:
            yield from ftrace.ftrace_hash_move_and_update_ops(ops, enable, new)
        finally:
            ftrace.ftrace_lock.release()


def set_ftrace_early_graph(system: "System", buf: str, enable: bool) -> Generator[object, None, None]:
    """set_ftrace_early_graph(): each comma-separated glob into ftrace_graph_funcs[] (or
    ftrace_graph_notrace_funcs[]) through ftrace_set_func(); one that fails is told at
    KERN_DEBUG: "ftrace: function %s not traceable"."""
    graph = system.graph
    table = graph.graph_funcs if enable else graph.notrace_funcs
    for func in _strsep(buf):
        ret = yield from ftrace_set_func(system, table, func)
        if ret:
            system.env.printk(f"ftrace: function {func} not traceable\n")


def set_ftrace_early_filters(system: "System", opts: BootOptions) -> Generator[object, None, None]:
    """set_ftrace_early_filters(), the end of ftrace_init(): filter, notrace, then the graph's."""
    if opts.ftrace_filter:
        yield from ftrace_set_early_filter(system, opts.ftrace_filter, True)
    if opts.ftrace_notrace:
        yield from ftrace_set_early_filter(system, opts.ftrace_notrace, False)
    if opts.graph_filter:
        yield from set_ftrace_early_graph(system, opts.graph_filter, True)
    if opts.graph_notrace:
        yield from set_ftrace_early_graph(system, opts.graph_notrace, False)


def _register_tracer(system: "System", opts: BootOptions, name: str) -> None:
    """The end of register_tracer(): the tracer named by ftrace= is started as it registers
    ("Starting tracer '%s'", tracing_set_tracer(), whose result is not checked), then the
    boot options are applied again (a tracer's own options exist from now on)."""
    if opts.bootup_tracer is None or opts.bootup_tracer != name:
        return
    system.env.printk(f"Starting tracer '{name}'\n")
    _write_ignoring(system, "current_tracer", name)
    opts.bootup_tracer = None
    apply_trace_boot_options(system, opts)


def apply_at_boot(system: "System", opts: BootOptions) -> None:
    """What start_kernel() and the initcalls do with the options, in their order:
    tracer_alloc_buffers() (the clock, with "Trace clock %s not defined, going back to
    default" for an unknown one; nop registers; the options), set_ftrace_early_filters()
    from ftrace_init(), the function tracers registering, and clear_boot_tracer() at
    late_initcall for an ftrace= that named no tracer.  The buffer size is the System's to
    apply when it allocates the buffer (trace_buf_size)."""
    if opts.trace_clock is not None and not _write_ignoring(system, "trace_clock", opts.trace_clock):
        system.env.printk(f"Trace clock {opts.trace_clock} not defined, going back to default\n")
    _register_tracer(system, opts, "nop")
    apply_trace_boot_options(system, opts)
    run_to_completion(set_ftrace_early_filters(system, opts))
    for name in REGISTER_ORDER[1:]:
        _register_tracer(system, opts, name)
    if opts.bootup_tracer is not None:  # clear_boot_tracer()
        system.env.printk(f"ftrace bootup tracer '{opts.bootup_tracer}' not registered.\n")
        opts.bootup_tracer = None


def buffer_entries(opts: BootOptions, entry_bytes: int, max_kb: int) -> int | None:
    """trace_buf_size= as the ring buffer's events a CPU (None: the default size).  The
    kernel takes any size it can allocate; this machine keeps at most max_kb KB a CPU."""
    if opts.trace_buf_size is None:
        return None
    if opts.trace_buf_size > max_kb * 1024:
        raise CmdlineError(f"trace_buf_size={opts.trace_buf_size}: this machine keeps at most {max_kb} KB a CPU",
                           errno.ENOMEM)
    return max(1, opts.trace_buf_size // entry_bytes)
