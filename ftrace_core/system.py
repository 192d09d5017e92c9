"""boot(): the emulated kernel with ftrace wired in, and the Python API over it.

This is where the layers meet: the emu Kernel, the text port and kernel environment that
let the ftrace core run on it, ftrace_init at the end of boot, the module hooks of the chosen
variant, the function tracer and tracefs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import guest
from emu.errors import GuestFault, MemoryAccessError, SymbolError, TextWriteFault
from emu.kernel import CALL_BUDGET, Kernel
from emu.modules import Module
from emu.oops import notify_die
from emu.sched import Point, run_to_completion

from . import ftrace_enabled
from . import module as ftrace_module
from . import pid as ftrace_pid
from .arch_x86 import Addresses, ArchX86
from .breakpoints import ftrace_int3_handler
from .ops import FtraceOps
from .hash import hash_contains_ip
from .cmdline import apply_at_boot, parse_cmdline
from .cmdline import buffer_entries as buffer_entries_from
from .errors import FtraceError
from .sysctl import SysctlTable
from .text import TextFault
from .tracers import FunctionProfiler, StackTracer
from .tracers import commands as probe_commands
from .tracers import dump_on_oops
from .tracers.stacktrace import trace_dump_stack
from .tracefs import MAX_BUFFER_KB, Tracefs
from .tracefs import pid as pid_file
from .tracer import DEFAULT_BUFFER_ENTRIES, ENTRY_BYTES, FunctionTracer, GraphTracer, RingBuffer
from .kernels import KernelTree, kernel_tree
from .update import Ftrace


class EmulatedText:
    """The text port on the emulator: reads from guest memory, writes through the single
    text-write path on the current CPU, and x86's set_*_text_rw/ro for prepare/post (v4.4-v4.8.17)."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel

    def read(self, ip: int, size: int) -> bytes:
        try:
            return self.kernel.machine.read(ip, size)
        except MemoryAccessError as exc:
            raise TextFault(ip, str(exc)) from None

    def write(self, ip: int, data: bytes) -> None:
        try:
            self.kernel.text.write(self.kernel.cpus[self.kernel.current_cpu], [(ip, data)])
        except TextWriteFault as exc:
            raise TextFault(exc.address, str(exc)) from None
        except GuestFault as exc:
            raise TextFault(exc.address or ip, str(exc)) from None

    def write_batch(self, writes: list[tuple[int, bytes]]) -> int:
        try:
            self.kernel.text.write(self.kernel.cpus[self.kernel.current_cpu], writes)
        except TextWriteFault as exc:
            return exc.index
        except GuestFault as exc:
            raise TextFault(exc.address or 0, str(exc)) from None
        return len(writes)

    def prepare(self) -> Iterator[object]:
        self.kernel.set_kernel_text_rw()
        yield Point("set_kernel_text_rw", "kernel .text rwx")
        yield from self.kernel.modules.set_all_modules_text_rw()

    def post_process(self) -> Iterator[object]:
        yield from self.kernel.modules.set_all_modules_text_ro()
        self.kernel.set_kernel_text_ro()
        yield Point("set_kernel_text_ro", "kernel .text r-x")


def banner(tree: KernelTree) -> str:
    """linux_banner for the tree a variant models: its version, then the commit and subject."""
    return f"Linux version {tree.uname} ({tree.commit} {tree.subject}) #1 SMP"


class EmulatedEnv:
    """KernelEnv on the emulator: the guest's printk and kallsyms, WARN with the current task."""

    def __init__(self, kernel: Kernel, uname: str):
        self.kernel = kernel
        self.uname = uname  # the modelled tree's version, as WARN and BUG print it

    def printk(self, text: str) -> None:
        self.kernel.printk(text)

    def format_ip(self, ip: int) -> str:
        return self.kernel.kallsyms.format(ip)

    def describe_ip(self, ip: int) -> str:
        """`sym [mod]` for the tool's own views (timelines, invariants): a module still
        UNFORMED, which the kernel's kallsyms hides, is named too."""
        hit = self.kernel.kallsyms.lookup(ip, unformed=True)
        if hit is None:
            return f"0x{ip:x}"
        return f"{hit[0].name} [{hit[0].module}]" if hit[0].module else hit[0].name

    def sym_short(self, ip: int) -> str:
        """seq_print_sym_short(): the bare symbol name, module or not; nothing if unknown."""
        hit = self.kernel.kallsyms.lookup(ip)
        return hit[0].name if hit else ""

    def name_ip(self, ip: int) -> str:
        hit = self.kernel.kallsyms.lookup(ip)
        if hit is None:
            return f"0x{ip:x}"
        sym = hit[0]
        return f"{sym.name} [{sym.module}]" if sym.module else sym.name

    def bug(self, where: str, detail: str) -> None:
        cpu = self.kernel.cpus[self.kernel.current_cpu]
        report = "\n".join([
            "------------[ cut here ]------------",
            f"kernel BUG at {where}!",
            "invalid opcode: 0000 [#1] SMP",
            f"CPU: {cpu.index} PID: {cpu.task.pid} Comm: {cpu.task.comm} Not tainted {self.uname} #1",
            detail,
            "---[ end trace 0000000000000000 ]---"])
        report = notify_die(self.kernel.machine.die_notifiers, cpu, report)  # die() -> __die()
        raise GuestFault(report, cpu=cpu.index, rip=0, address=None, kind="BUG")

    def warn(self, where: str, file: str = "kernel/trace/ftrace.c") -> None:
        cpu = self.kernel.cpus[self.kernel.current_cpu]
        mods = " ".join(m.name for m in reversed(self.kernel.modules.modules))
        self.printk("------------[ cut here ]------------\n")
        self.printk(f"WARNING: CPU: {cpu.index} PID: {cpu.task.pid} at {file} {where}()\n")
        self.printk(f"Modules linked in: {mods}\n")
        self.printk(f"CPU: {cpu.index} PID: {cpu.task.pid} Comm: {cpu.task.comm} Not tainted {self.uname} #1\n")
        self.printk("---[ end trace 0000000000000000 ]---\n")


class System:
    """A booted guest kernel with dynamic ftrace: the Python API users and tests drive."""

    def __init__(self, variant: str = "fixed", image: str | Path = guest.VMLINUX,
                 buffer_entries: int = DEFAULT_BUFFER_ENTRIES, recorder: str = "hook",
                 cmdline: str | None = None):
        """recorder: "hook" (a host hook records each traced call; exact, followed by the
        invariants) or "guest" (the guest's function_trace_call writes per-CPU rings that
        are drained when read; much faster).  cmdline: the kernel command line (None:
        console=ttyS0); its tracing options (ftrace=, ftrace_filter=, ...) apply at boot
        as the kernel applies them (ftrace_core.cmdline)."""
        self.tree = kernel_tree(variant)
        self.variant = variant
        self.boot_options = parse_cmdline(cmdline)
        self._buffer_entries = buffer_entries_from(self.boot_options, ENTRY_BYTES, MAX_BUFFER_KB) or buffer_entries
        self._recorder = recorder
        self.kernel = Kernel(image, late_init=[self._ftrace_init], uname=self.tree.uname,
                             banner=banner(self.tree), cmdline=self.boot_options.cmdline)

    def _ftrace_init(self, kernel: Kernel) -> None:
        """The kernel's ftrace_init() at the end of start_kernel, and the tracer's setup."""
        self.kernel = kernel  # the parts built here reach it before Kernel() returns
        sym = kernel.symbol
        addrs = Addresses(mcount=sym("__fentry__"), ftrace_caller=sym("ftrace_caller"),
                          ftrace_call=sym("ftrace_call"), ftrace_stub=sym("ftrace_stub"),
                          ftrace_ops_list_func=sym("ftrace_ops_list_func"),
                          ftrace_graph_call=sym("ftrace_graph_call"), ftrace_graph_caller=sym("ftrace_graph_caller"),
                          ftrace_graph_return=sym("ftrace_graph_return"))
        self.env = EmulatedEnv(kernel, self.tree.uname)
        self.ftrace = Ftrace(ArchX86(EmulatedText(kernel), addrs,
                                     lambda where: self.env.warn(where, "arch/x86/kernel/ftrace.c"), self.env.bug), self.env, self.variant)
        start, stop = sym("__start_mcount_loc"), sym("__stop_mcount_loc")
        raw = kernel.machine.read(start, stop - start)
        locs = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
        run_to_completion(self.ftrace.ftrace_init(locs))
        ftrace_module.install(self.ftrace, kernel.modules)
        self.buffer = RingBuffer(len(kernel.cpus), self._buffer_entries)
        self.tracer = FunctionTracer(kernel, self.ftrace, self.buffer, self._recorder)
        self.graph = GraphTracer(kernel, self.buffer)
        # The top-level trace array's ops: tracefs's filter files edit its hashes, for the
        # function tracer and function_graph alike.
        self.global_ops = FtraceOps("global_ops", sym("function_trace_call"),
                                    handler=self.tracer.function_trace_call)
        self.tracefs = Tracefs(self)
        pid_file.install(self.tracefs, ftrace_pid.install(self))  # set_ftrace_pid
        probe_commands.install(self)  # set_ftrace_filter's probe commands (system.probes)
        self.sysctls = SysctlTable()  # /proc/sys
        self.profiler = FunctionProfiler(self)  # function_profile_enabled, trace_stat/
        self.stack_tracer = StackTracer(self)  # stack_trace, kernel.stack_tracer_enabled
        ftrace_enabled.install(self)  # kernel.ftrace_enabled
        self.dump_on_oops = dump_on_oops.install(self, self.boot_options.dump_on_oops)  # ftrace_dump_on_oops
        self.graph.entry_test = self._ftrace_graph_entry_test
        kernel.machine.trap_handlers[3] = self._do_int3
        apply_at_boot(self, self.boot_options)  # ftrace=, ftrace_filter=, trace_options=, ...

    def _ftrace_graph_entry_test(self, func: int) -> bool:
        """ftrace_graph_entry_test() where update_function_graph_func() puts it (kernel/trace/
        ftrace.c, v4.5-v4.8.17): with an ops other than global_ops and graph_ops registered
        (the stack tracer's), a function reaches the graph entry only if global_ops' hashes
        select it."""
        graph_ops = self.profiler.graph_ops
        if all(op is self.global_ops or op is graph_ops for op in self.ftrace.ops_list):
            return True
        return hash_contains_ip(func, self.global_ops.filter_hash, self.global_ops.notrace_hash)

    def sysctl(self, name: str) -> str:
        """`cat /proc/sys/NAME`: a sysctl's value (names as sysctl(8) has them:
        kernel.stack_tracer_enabled, or kernel/stack_tracer_enabled)."""
        return self.sysctls.read(name)

    def set_sysctl(self, name: str, value: int | str) -> None:
        """`echo VALUE > /proc/sys/NAME`: the sysctl's handler runs (SysctlError with the
        kernel's errno for a bad value or name)."""
        self.sysctls.write(name, f"{value}\n")

    def _do_int3(self, cpu, rip: int) -> int | None:
        """do_int3(): ftrace_int3_handler first; the hit is recorded for traces and timelines."""
        resume = ftrace_int3_handler(self.ftrace, rip)
        if resume is not None:
            self.tracer.breakpoint_hit(cpu, rip - 1)
        return resume

    def set_tracing_on(self, on: bool) -> None:
        """tracer_tracing_on()/off(): the ring buffer records or not, for every tracer."""
        self.tracer.tracing_on = on
        self.graph.tracing_on = on

    def configure_global_ops(self, graph: bool, stack_trace: bool = False) -> None:
        """The function tracer's callback (function_stack_trace_call with func_stack_trace:
        function_trace_init() chooses), or the stub for function_graph (whose work is done by
        the graph caller)."""
        ops = self.global_ops
        if graph:
            ops.func, ops.handler = self.kernel.symbol("ftrace_stub"), None
        elif stack_trace:
            ops.func, ops.handler = self.kernel.symbol("function_stack_trace_call"), self._function_stack_trace_call
        else:
            ops.func, ops.handler = self.kernel.symbol("function_trace_call"), self.tracer.function_trace_call

    def _function_stack_trace_call(self, ip: int, parent_ip: int, cpu) -> None:
        """function_stack_trace_call() (kernel/trace/trace_functions.c): the function event,
        then a stack-trace event of the callers."""
        self.tracer.function_trace_call(ip, parent_ip, cpu)
        trace_dump_stack(self, cpu)

    # -- the API ---------------------------------------------------------------------------
    @property
    def cpus(self):
        return self.kernel.cpus

    def insmod(self, path: str | Path, cpu: int = 0) -> Module:
        """Load a module (a .ko file) on a CPU, running its init there."""
        with self._on_cpu(cpu):
            return self.kernel.modules.insmod(self.kernel.cpus[cpu], path)

    def rmmod(self, name: str, cpu: int = 0) -> None:
        with self._on_cpu(cpu):
            self.kernel.modules.rmmod(self.kernel.cpus[cpu], name)

    def call(self, symbol: str | int, *args: int, cpu: int = 0, budget: int | None = CALL_BUDGET,
             progress: Callable[[int], None] | None = None) -> int:
        """Call a guest function (kernel or module) with integer arguments; its return value.
        budget: instructions before it is stopped as a soft lockup (None: no limit, for
        benchmarks' long runs); progress: told the instructions run, every few million
        (emu.cpu.PROGRESS_INSNS)."""
        with self._on_cpu(cpu):
            return self.kernel.call(symbol, *args, cpu=cpu, budget=budget, progress=progress)

    def alloc(self, size: int) -> int:
        """kmalloc(size) in the guest: the address, or an error when the heap is exhausted."""
        addr = self.call("kzalloc", size)
        if not addr:
            raise MemoryAccessError(f"kmalloc({size}) failed: guest heap exhausted")
        return addr & ((1 << 64) - 1)

    def write(self, addr: int, data: bytes) -> None:
        self.kernel.machine.write(addr, data)

    def read(self, addr: int, size: int) -> bytes:
        return self.kernel.machine.read(addr, size)

    def dmesg(self) -> str:
        return self.kernel.dmesg()

    def symbol(self, name: str) -> int:
        return self.kernel.symbol(name)

    def write_tracedat(self, path: str | Path, instance: str | None = None, timeline=None, version: int = 6,
                       compression: str | None = None) -> int:
        """The trace (the top level's, or instances/NAME's) as a trace.dat (version 6, or 7
        with compression None, "zlib" or "zstd") for `trace-cmd report` and KernelShark, as
        `trace-cmd extract` would write it; the bytes written.  The buffer is read, not
        consumed.  With a run's timeline
        (ftrace_core.timeline.Timeline), its rows go in too, as print events "ftrace-emu: ..."
        of their CPU at their time: the tool's account, beside the kernel's events."""
        from .ringbuffer.tracedat import write_tracedat

        array = None
        if instance is not None:
            array = self.tracefs.instances.get(instance)
            if array is None:
                raise FtraceError(f"no instance {instance!r} (mkdir instances/{instance} first)")
        notes = []
        if timeline is not None:
            from .tracer import PrintEntry, trace_comm

            tasks = [c.task for c in self.kernel.cpus]  # a run's tasks stay on their CPUs
            notes = [PrintEntry(ts, cpu, trace_comm(tasks[cpu]), tasks[cpu].pid, f"ftrace-emu: {text}\n")
                     for cpu, text, ts in timeline.stamped()]
        return write_tracedat(self, path, array, notes, version, compression)

    def describe(self, ip: int) -> tuple[str, str | None]:
        """(symbol, module or None) for an address, for machine-readable output."""
        hit = self.kernel.kallsyms.lookup(ip)
        return (hit[0].name, hit[0].module) if hit else (f"0x{ip:x}", None)

    def _on_cpu(self, cpu: int):
        if not 0 <= cpu < len(self.kernel.cpus):
            raise SymbolError(f"no CPU {cpu}: this machine has CPUs 0-{len(self.kernel.cpus) - 1}")
        return _CurrentCpu(self.kernel, cpu)


class _CurrentCpu:
    def __init__(self, kernel: Kernel, cpu: int):
        self.kernel, self.cpu = kernel, cpu

    def __enter__(self) -> None:
        self.saved, self.kernel.current_cpu = self.kernel.current_cpu, self.cpu

    def __exit__(self, *exc: object) -> None:
        self.kernel.current_cpu = self.saved


def boot(variant: str = "fixed", image: str | Path = guest.VMLINUX, **kwargs) -> System:
    """Boot the guest kernel with ftrace (variant: one of ftrace_core.kernels.VARIANTS)."""
    return System(variant, image, **kwargs)
