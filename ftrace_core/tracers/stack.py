"""The stack tracer: a port of kernel/trace/trace_stack.c (v4.5.0 and v4.8.17 have the same
file), measuring the emulated CPUs' real stacks.

Its ftrace_ops (trace_ops) calls stack_trace_call for every function it traces (all, or
those of stack_trace_filter); the host does the callback's work at its first instruction,
where RSP is the guest's own stack.  A call deeper than any before it becomes the new
maximum: the stack is scanned for the return addresses save_stack_trace() reports and each
one's depth is where it sits.  Switched by the kernel.stack_tracer_enabled sysctl.

The guest runs each CPU on one kernel stack (emu.kernel: STACK_SIZE, 64 KiB, between guard
pages; "context switches" are bookkeeping on it), so that stack is THREAD_SIZE here and its
top is where a depth is measured from.  The guest is built without frame pointers, so
save_stack_trace() is x86's walk for CONFIG_FRAME_POINTER=n: every word of the stack that
is a kernel text address, as print_context_stack() takes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generator

from unicorn.x86_const import UC_X86_REG_RSP

from emu.sched import Lock

from ..ops import FtraceOps
from ..sysctl import proc_dointvec
from ..tracefs.regex import RegexHandle, ftrace_regex_open_check
from ..tracer import FTRACE_RETFUNC_DEPTH

if TYPE_CHECKING:
    from ..system import System

ULONG_MAX = (1 << 64) - 1
MCOUNT_INSN_SIZE = 5
#: STACK_TRACE_ENTRIES (kernel/trace/trace.h); one is kept back for the passed-in ip.
STACK_TRACE_ENTRIES = 500
WORD = 8
RET_STACK_ENTRY = 16  # guest/kernel/main.c's struct ftrace_ret_stack {ret, func}

STACK_TRACE_DISABLED = ("#\n"
                        "#  Stack tracer disabled\n"
                        "#\n"
                        "# To enable the stack tracer, either add 'stacktrace' to the\n"
                        "# kernel command line\n"
                        "# or 'echo 1 > /proc/sys/kernel/stack_tracer_enabled'\n"
                        "#\n")


class StackFilterHandle(RegexHandle):
    """stack_trace_filter_open(): ftrace_regex_open() on the stack tracer's trace_ops, with
    set_ftrace_filter's write and release (the hash is committed at close)."""

    def __init__(self, tracefs, name: str, flags: int, ops: FtraceOps):
        super().__init__(tracefs.system, name, True, (flags & 3) != 0, flags, ops=ops)
        self.tracefs = tracefs
        self._text: str | None = None

    def read_steps(self) -> Generator[object, None, str]:
        if self._text is None:  # seq_file: what the first read of this open saw
            self._text = yield from self.tracefs._read_now(self.name)
        return self._text


class StackTracer:
    """stack_trace_max, stack_dump_trace[], stack_trace_index[], stack_trace_max_size and
    trace_ops; the tracefs files and the sysctl."""

    def __init__(self, system: "System"):
        self.system = system
        kernel = system.kernel
        self.uc = kernel.machine.uc
        self.trace_ops = FtraceOps("trace_ops", kernel.symbol("stack_trace_call"), handler=self.stack_trace_call)
        self.stack_dump_trace = [ULONG_MAX] * (STACK_TRACE_ENTRIES + 1)
        self.stack_trace_index = [0] * STACK_TRACE_ENTRIES
        self.nr_entries = 0  # stack_trace_max.nr_entries
        self.stack_trace_max_size = 0
        self.tracer_frame = 0  # check_stack()'s static: the tracer's own frame, once known
        self.trace_active = [0] * len(kernel.cpus)
        self.stack_tracer_enabled = 0
        self.last_stack_tracer_enabled = False
        self.stack_sysctl_mutex = Lock("stack_sysctl_mutex")
        self.return_to_handler = kernel.symbol("return_to_handler")
        tracefs = system.tracefs
        tracefs.add("stack_max_size", lambda: f"{self.stack_trace_max_size}\n", self.stack_max_size_write)
        tracefs.add("stack_trace", self.stack_trace_show)
        tracefs.add("stack_trace_filter", lambda: tracefs.read_hash(self.trace_ops.filter_hash, notrace=False),
                    opener=self.stack_trace_filter_open, lock="ftrace_lock")
        system.sysctls.add("kernel.stack_tracer_enabled", lambda: f"{self.stack_tracer_enabled}\n",
                           self.stack_trace_sysctl)

    # -- the callback ---------------------------------------------------------------------------
    def stack_trace_call(self, ip: int, parent_ip: int, cpu) -> None:
        """stack_trace_call(): once per CPU at a time, check_stack() from the callback's own
        stack pointer, with ip moved past the call site (the return address it pushed)."""
        if self.trace_active[cpu.index]:
            return
        self.trace_active[cpu.index] += 1
        try:
            self.check_stack(ip + MCOUNT_INSN_SIZE, self.uc.reg_read(UC_X86_REG_RSP), cpu)
        finally:
            self.trace_active[cpu.index] -= 1

    def check_stack(self, ip: int, stack: int, cpu) -> None:
        """check_stack(): if the stack at `stack` (less the tracer's frame) is deeper than any
        seen, record it: the return addresses from ip's on, each with the depth of the slot
        it is found in, counted from the stack's top."""
        frame_size = self.tracer_frame
        top = cpu.stack_top
        this_size = top - stack - frame_size
        if this_size <= self.stack_trace_max_size:
            return
        if not cpu.stack_base <= stack < top:  # object_is_on_stack(): no interrupt stacks
            return
        if not frame_size:  # "in case another CPU set the tracer_frame on us"
            this_size -= self.tracer_frame
        if this_size <= self.stack_trace_max_size:
            return
        self.stack_trace_max_size = this_size
        raw = self.system.kernel.machine.read(stack, top - stack)
        words = [int.from_bytes(raw[k:k + WORD], "little") for k in range(0, len(raw), WORD)]
        dump = self.stack_dump_trace
        nr = self.save_stack_trace(words, cpu, dump, STACK_TRACE_ENTRIES - 1)
        # Skip over the tracer's own overhead: what lies below ip's return address.
        i = next((k for k in range(nr) if dump[k] == ip), nr)
        if i == nr:  # "Some archs may not have the passed in ip in the dump"
            i = 0
        index = self.stack_trace_index
        x = 0
        start = 0
        while i < nr:
            found = False
            index[x] = this_size
            p = start
            while p < len(words) and i < nr:
                if dump[i] == ULONG_MAX:
                    break
                if words[p] == dump[i]:
                    dump[x] = dump[i]
                    i += 1
                    this_size = index[x] = (len(words) - p) * WORD
                    x += 1
                    found = True
                    start = p + 1
                    if not self.tracer_frame:
                        self.tracer_frame = p * WORD
                        self.stack_trace_max_size -= self.tracer_frame
                p += 1
            if not found:
                i += 1
        self.nr_entries = x
        for k in range(x, i):
            dump[k] = ULONG_MAX
        # task_stack_end_corrupted(): the guest's stacks sit between unmapped guard pages, so
        # an overflow faults (an oops) before it could corrupt anything this would find.

    def save_stack_trace(self, words: list[int], cpu, dump: list[int], max_entries: int) -> int:
        """save_stack_trace() with x86's print_context_stack() (no frame pointers): each word
        below the stack's last that is kernel text, and for each return_to_handler the real
        return address from the graph tracer's return stack (print_ftrace_graph_addr());
        then ULONG_MAX if there is room.  The walk starts at the callback's frame: the three
        frames the kernel skips (dump_trace's, save_stack_trace's, check_stack's) are host
        code here.  Returns nr_entries."""
        is_text = self.system.kernel.kallsyms.is_text
        nr = 0
        graph = 0
        for addr in words[:-1]:  # valid_stack_ptr(): not the last word
            if nr >= max_entries:
                break
            if not is_text(addr):
                continue
            dump[nr] = addr
            nr += 1
            if addr == self.return_to_handler and nr < max_entries:
                ret = self._graph_return_address(cpu, graph)
                if ret is not None:
                    dump[nr] = ret
                    nr += 1
                    graph += 1
        if nr < max_entries:
            dump[nr] = ULONG_MAX
            nr += 1
        return nr

    def _graph_return_address(self, cpu, graph: int) -> int | None:
        """print_ftrace_graph_addr(): the return address the graph-th return_to_handler up
        the stack stands for (current->ret_stack[curr_ret_stack - graph].ret)."""
        tracer = self.system.graph
        index = tracer._index(self.uc, cpu.index)
        if index < graph:
            return None
        slot = tracer.ret_stack + ((cpu.index & 1) * FTRACE_RETFUNC_DEPTH + index - graph) * RET_STACK_ENTRY
        return int.from_bytes(self.system.kernel.machine.read(slot, 8), "little")

    # -- the files ------------------------------------------------------------------------------
    def stack_max_size_write(self, data: bytes) -> Generator[object, None, None]:
        """stack_max_size_write(): any unsigned long becomes the maximum (0 starts over)."""
        from ..tracefs import kstrtoul

        value = kstrtoul("stack_max_size", data)
        self.stack_trace_max_size = value - (1 << 64) if value >> 63 else value  # *(long *)
        yield from ()

    def stack_trace_show(self) -> str:
        """stack_trace's seq_file (t_start/t_show): the header with the entry count, the
        disabled notice when off with no maximum yet, then a row an entry: index, depth,
        the size of its frame (the last one's depth), and the location (%pS)."""
        dump, index, nr = self.stack_dump_trace, self.stack_trace_index, self.nr_entries
        out = ["        Depth    Size   Location    (%d entries)\n"
               "        -----    ----   --------\n" % nr]
        if not self.stack_tracer_enabled and not self.stack_trace_max_size:
            out.append(STACK_TRACE_DISABLED)
        fmt = self.system.kernel.kallsyms.format
        for i in range(nr):
            if dump[i] == ULONG_MAX:
                break
            last = i + 1 == nr or dump[i + 1] == ULONG_MAX
            size = index[i] if last else index[i] - index[i + 1]
            out.append("%3d) %8d   %5d   %s\n" % (i, _int(index[i]), _int(size), fmt(dump[i])))
        return "".join(out)

    def stack_trace_filter_open(self, name: str, flags: int) -> Generator[object, None, object]:
        ftrace_regex_open_check(self.system, name)
        yield from ()
        return StackFilterHandle(self.system.tracefs, name, flags, self.trace_ops)

    # -- kernel.stack_tracer_enabled ------------------------------------------------------------
    def stack_trace_sysctl(self, data: bytes) -> Generator[object, None, None]:
        """stack_trace_sysctl(): proc_dointvec() stores the value; a change of its truth
        registers or unregisters trace_ops (whose errors are not reported)."""
        yield from self.stack_sysctl_mutex.acquire()
        try:
            self.stack_tracer_enabled = proc_dointvec("kernel.stack_tracer_enabled", data)
            enabled = bool(self.stack_tracer_enabled)
            if enabled == self.last_stack_tracer_enabled:
                return
            self.last_stack_tracer_enabled = enabled
            ftrace = self.system.ftrace
            if enabled:
                yield from ftrace.register_ftrace_function(self.trace_ops)
            else:
                yield from ftrace.unregister_ftrace_function(self.trace_ops)
        finally:
            self.stack_sysctl_mutex.release()


def _int(value: int) -> int:
    """An unsigned value printed with %d (stack_trace_index[] is unsigned, shown as int)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value

