"""The function_graph tracer's text as kernel/trace/trace_functions_graph.c prints it
(v4.4-v4.8): the column header for the tracer's flags (__print_graph_headers_flags()), and
each event printed in the order read with the per-CPU state the kernel's fgraph_data keeps
(the last pid, for the context-switch lines of verif_pid(); the depth, for comments; the
function entered at each depth, to name the function a `}` closes when its entry is gone)."""

from __future__ import annotations

from .text import (
    DEFAULT_FORMAT, LAT_FLAGS, FunctionPrinter, Header, Symbols, TraceFormat, _mark, latency_header, tracer_banner,
)
from ..tracer import FTRACE_RETFUNC_DEPTH, GraphEntry, PrintEntry

TRACE_GRAPH_INDENT = 2
TRACE_GRAPH_PROCINFO_LENGTH = 14


def graph_duration(ns: int, overhead: bool = True) -> str:
    """print_graph_duration()'s number: the overhead mark (or blanks), the time in us with
    up to 7 digits, padded to the column's width; the caller adds '|  '."""
    usecs = str(ns // 1000)
    text = usecs
    if len(usecs) < 7:
        text += "." + f"{ns % 1000:03d}"[: 7 - len(usecs)]
    text += " us "
    return (f"{_mark(ns)} " if overhead else "  ") + text + " " * max(0, 8 - (len(text) - 4))


def graph_header(flags: frozenset[str], latency: bool = False) -> str:
    """__print_graph_headers_flags(): the column titles for the flags that are on."""
    first, second = "#", "#"
    if latency:  # print_lat_header()
        size = 16 * ("funcgraph-abstime" in flags) + 4 * ("funcgraph-cpu" in flags) + 17 * ("funcgraph-proc" in flags)
        pad = " " * size
        lat = (f"#{pad}  _-----=> irqs-off        \n#{pad} / _----=> need-resched    \n"
               f"#{pad}| / _---=> hardirq/softirq \n#{pad}|| / _--=> preempt-depth   \n"
               f"#{pad}||| /                      \n")
    else:
        lat = ""
    for flag, top, bottom in (("funcgraph-abstime", "     TIME       ", "      |         "),
                              ("funcgraph-cpu", " CPU", " |  "),
                              ("funcgraph-proc", "  TASK/PID       ", "   |    |        ")):
        if flag in flags:
            first, second = first + top, second + bottom
    if latency:
        first, second = first + "||||", second + "||||"
    if "funcgraph-duration" in flags:
        first, second = first + "  DURATION   ", second + "   |   |      "
    return lat + first + "               FUNCTION CALLS\n" + second + "               |   |   |   |\n"


#: The default header (CPU and duration columns), for tests and tools that split on it.
GRAPH_HEADER = graph_header(DEFAULT_FORMAT.graph)


def _proc(comm: str, pid: int) -> str:
    """print_graph_proc(): comm (7 characters at most)-pid centred in 14 columns."""
    text = f"{comm[:7]}-{pid}"
    spaces = max(0, TRACE_GRAPH_PROCINFO_LENGTH - len(text))
    return " " * (spaces // 2) + text + " " * (spaces - spaces // 2)


class _CpuState:
    def __init__(self) -> None:
        self.last_pid = -1
        self.last_comm = ""
        self.depth = 0
        self.enter_funcs: dict[int, int] = {}


class GraphPrinter:
    """print_graph_function_flags() over a stream of events, in the order read."""

    def __init__(self, symbols: Symbols, nr_cpus: int, fmt: TraceFormat = DEFAULT_FORMAT):
        self.symbols, self.fmt = symbols, fmt
        self.flags = fmt.graph
        self.cpu_width = len(str(max(nr_cpus - 1, 0)))  # max_bytes_for_cpu
        self.state: dict[int, _CpuState] = {}
        self.plain = FunctionPrinter(symbols, fmt)

    def _cpu(self, cpu: int) -> str:
        return f" {cpu:>{self.cpu_width}}) "

    def _prologue(self, e) -> str:
        """print_graph_prologue(): a context-switch banner when the CPU's task changed, then
        the context columns the flags ask for."""
        state = self.state.setdefault(e.cpu, _CpuState())
        out = ""
        if state.last_pid != e.pid:  # verif_pid()
            if state.last_pid != -1:
                out = (" ------------------------------------------\n" + self._cpu(e.cpu)
                       + _proc(state.last_comm, state.last_pid) + " => " + _proc(e.comm, e.pid)
                       + "\n ------------------------------------------\n\n")
            state.last_pid, state.last_comm = e.pid, e.comm
        if not self.fmt.context_info:
            return out
        flags = self.flags
        if "funcgraph-abstime" in flags:
            out += f"{e.ts // 1_000_000_000:5d}.{e.ts % 1_000_000_000 // 1000:06d} |  "
        if "funcgraph-cpu" in flags:
            out += self._cpu(e.cpu)
        if "funcgraph-proc" in flags:
            out += _proc(e.comm, e.pid) + " | "
        if self.fmt.latency:
            out += " " + LAT_FLAGS
        return out

    def _duration(self, ns: int | None) -> str:
        """print_graph_duration(): None fills the column (an entry, a comment)."""
        if "funcgraph-duration" not in self.flags or not self.fmt.context_info:
            return ""
        if ns is None:
            return "              |  "
        return graph_duration(ns, "funcgraph-overhead" in self.flags) + "|  "

    def entry(self, e: GraphEntry, ret: GraphEntry | None) -> str:
        """print_graph_entry(): a leaf `func();` when its return comes next on the CPU (ret),
        else `func() {`."""
        state = self.state.setdefault(e.cpu, _CpuState())
        out = self._prologue(e)
        indent = " " * (e.depth * TRACE_GRAPH_INDENT)
        name = self.symbols.name_ip(e.func)
        if ret is not None:  # print_graph_entry_leaf()
            state.depth = e.depth - 1
            state.enter_funcs.pop(e.depth, None)
            return out + self._duration(ret.duration) + f"{indent}{name}();\n"
        state.depth = e.depth  # print_graph_entry_nested()
        if e.depth < FTRACE_RETFUNC_DEPTH:
            state.enter_funcs[e.depth] = e.func
        return out + self._duration(None) + f"{indent}{name}() {{\n"

    def ret(self, e: GraphEntry) -> str:
        """print_graph_return(): `}`, naming the function when its entry was not printed
        (or always, with funcgraph-tail); the overrun count with funcgraph-overrun."""
        state = self.state.setdefault(e.cpu, _CpuState())
        state.depth = e.depth - 1
        matched = True
        if e.depth < FTRACE_RETFUNC_DEPTH:
            matched = state.enter_funcs.pop(e.depth, 0) == e.func
        out = self._prologue(e) + self._duration(e.duration) + " " * (e.depth * TRACE_GRAPH_INDENT)
        if matched and "funcgraph-tail" not in self.flags:
            out += "}\n"
        else:
            out += f"}} /* {self.symbols.name_ip(e.func)} */\n"
        if "funcgraph-overrun" in self.flags:
            out += f" (Overruns: {e.overrun})\n"
        return out

    def comment(self, e, body: str) -> str:
        """print_graph_comment(): another event as a C comment one level in."""
        depth = self.state.setdefault(e.cpu, _CpuState()).depth
        out = self._prologue(e) + self._duration(None)
        if depth > 0:
            out += " " * ((depth + 1) * TRACE_GRAPH_INDENT)
        return out + "/* " + body.rstrip("\n") + " */\n"

    def lines(self, entries: list) -> str:
        """Every event, a leaf's return taken with its entry (get_return_for_leaf(): the
        next event on the same CPU is the return of the same function by the same task)."""
        following: dict[int, int] = {}  # index -> index of the next event on its CPU
        last: dict[int, int] = {}
        for i, e in enumerate(entries):
            if e.cpu in last:
                following[last[e.cpu]] = i
            last[e.cpu] = i
        out, taken = [], set()
        for i, e in enumerate(entries):
            if i in taken:
                continue
            if isinstance(e, GraphEntry):
                if e.exit:
                    out.append(self.ret(e))
                    continue
                j = following.get(i)
                nxt = entries[j] if j is not None else None
                leaf = (isinstance(nxt, GraphEntry) and nxt.exit and nxt.pid == e.pid and nxt.func == e.func)
                if leaf:
                    taken.add(j)
                out.append(self.entry(e, nxt if leaf else None))
            elif isinstance(e, PrintEntry):  # trace_print_printk_msg_only()
                out.append(self.comment(e, e.text))
            else:  # TRACE_FN, TRACE_STACK: not the graph's to print (UNHANDLED), so the
                out.append(self.plain.line(e, i))  # default printers print them
        return "".join(out)


def format_graph(entries: list, symbols: Symbols, nr_cpus: int, head: Header | None = None,
                 fmt: TraceFormat = DEFAULT_FORMAT) -> str:
    """The function_graph tracer's trace (trace_pipe: head None, no header)."""
    text = ""
    if head is not None:
        text = tracer_banner(head)
        if fmt.context_info:  # print_graph_headers_flags()
            if fmt.latency:
                text += latency_header(head) if head.entries else ""
            if not fmt.latency or head.entries:
                text += graph_header(fmt.graph, fmt.latency)
    return text + GraphPrinter(symbols, nr_cpus, fmt).lines(entries)
