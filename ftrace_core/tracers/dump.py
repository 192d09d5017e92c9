"""ftrace_dump() (kernel/trace/trace.c, the same in v4.5 and v4.8.17): the ring buffer
printed into the kernel log, as an oops or the dump probe command does: tracing is switched
off, and each event is consumed and printed in the latency format (TRACE_FILE_LAT_FMT) of
the trace array's current options."""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Callable

from ..output.text import FunctionPrinter

if TYPE_CHECKING:
    from ..system import System


class DumpMode(enum.Enum):
    """enum ftrace_dump_mode."""

    DUMP_NONE = 0
    DUMP_ALL = 1
    DUMP_ORIG = 2  # only the buffer of the CPU that dumps


#: LOG_BUF_LEN and vprintk()'s line buffer (guest/kernel/printk.c).
LOG_BUF_LEN = 64 * 1024
LINE_MAX = 511


def printk_in_callback(kernel, cpu, text: str) -> None:
    """The guest's vprintk() (guest/kernel/printk.c), done by the host for a callback that
    runs inside a guest call, where guest code cannot be called: the "[%5lu.%06lu] " stamp
    at a line's start, the text (at most 511 bytes) appended to __log_buf, log_next moved,
    what does not fit counted in log_dropped."""
    machine, sym = kernel.machine, kernel.symbol
    data = text.encode()[:LINE_MAX]
    midline = machine.read(sym("log_midline"), 1)[0]
    if not midline:
        ns = cpu.clock_ns
        data = f"[{ns // 1_000_000_000:5d}.{ns % 1_000_000_000 // 1000:06d}] ".encode() + data
    used = machine.read_u64(sym("log_next"))
    room = LOG_BUF_LEN - used
    if len(data) > room:
        dropped = machine.read_u64(sym("log_dropped"))
        machine.write(sym("log_dropped"), (dropped + len(data) - room).to_bytes(8, "little"))
    stored = data[:room]
    machine.write(sym("__log_buf") + used, stored)
    machine.write(sym("log_next"), (used + len(stored)).to_bytes(8, "little"))
    if data:
        machine.write(sym("log_midline"), bytes([data[-1] != ord("\n")]))


def ftrace_dump(system: "System", mode: DumpMode | int, cpu, printk: Callable[[str], None] | None = None) -> None:
    """ftrace_dump(): tracing_off(), then every event of the chosen buffers, oldest first,
    between dashed lines ("(ftrace buffer empty)" when there is none).  mode may be any int
    (the ftrace_dump_on_oops sysctl holds one): a value that is no dump mode dumps every CPU,
    after saying so.  printk: where the lines go (default: the log, from inside a guest call)."""
    system.set_tracing_on(False)
    value = mode.value if isinstance(mode, DumpMode) else mode
    if value == DumpMode.DUMP_NONE.value:
        return
    if printk is None:
        def printk(text: str) -> None:  # KERN_TRACE (KERN_EMERG) lines, from inside the guest call
            printk_in_callback(system.kernel, cpu, text)
    if value not in (DumpMode.DUMP_ALL.value, DumpMode.DUMP_ORIG.value):
        printk("Bad dumping mode, switching to all CPUs dump\n")
        value = DumpMode.DUMP_ALL.value

    buffer = system.buffer
    cpus = [cpu.index] if value == DumpMode.DUMP_ORIG.value else list(range(len(buffer.cpus)))
    printk("Dumping ftrace buffer:\n")
    if system.ftrace.ftrace_disabled:  # ftrace_is_dead()
        printk("# WARNING: FUNCTION TRACING IS CORRUPTED\n")
        printk("#          MAY BE MISSING FUNCTION EVENTS\n")
    buffer.pull()
    entries = sorted((e for c in cpus for e in buffer.cpus[c]), key=lambda e: (e.ts, e.cpu))
    for c in cpus:  # trace_consume(): what is printed is gone from the buffer
        buffer.cpus[c].clear()
    if not entries:
        printk("   (ftrace buffer empty)\n")
        return
    fmt = dataclasses.replace(system.tracefs.options.format(), latency=True)
    printer = FunctionPrinter(system.env, fmt, buffer.time_start)
    printk("---------------------------------\n")
    for i, e in enumerate(entries):
        next_ts = entries[i + 1].ts if i + 1 < len(entries) else None
        printk(printer.line(e, i, next_ts))  # trace_printk_seq(): one event's text a printk
    printk("---------------------------------\n")
