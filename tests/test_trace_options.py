"""trace_options and options/ (kernel/trace/trace.c: trace_set_options(), set_tracer_flag(),
__set_tracer_option(), tracing_trace_options_show(), v4.5 and v4.8.17) and what the options
change in the printed trace (trace_output.c, trace_functions_graph.c of the same trees)."""

from __future__ import annotations

import errno
import re

import pytest

from emu.cpu import Task
from ftrace_core.errors import TracefsError
from ftrace_core.system import boot


def _events(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _traced(variant: str = "fixed", tracer: str = "function", glob: str = "get_current_pid"):
    s = boot(variant)
    s.tracefs.write("set_ftrace_filter", glob)
    s.tracefs.write("current_tracer", tracer)
    s.call("workload_getpid")
    return s


def test_trace_options_lists_core_then_the_current_tracers_options():
    """tracing_trace_options_show(): TRACE_FLAGS in bit order (v4.5: no event-fork; v4.7 put
    it after markers), `no` before those that are off, then the current tracer's."""
    s = boot("fixed")
    listed = s.tracefs.read("trace_options").split()
    assert listed[:4] == ["print-parent", "nosym-offset", "nosym-addr", "noverbose"]
    assert listed[-5:] == ["function-trace", "nodisplay-graph", "nostacktrace", "notest_nop_accept",
                           "notest_nop_refuse"]
    assert "event-fork" not in " ".join(listed)
    newer = boot("v4.8.17").tracefs.read("trace_options").split()
    assert newer[newer.index("markers") + 1] == "noevent-fork"
    s.tracefs.write("current_tracer", "function_graph")
    graph = s.tracefs.read("trace_options").split()
    assert graph[-10:] == ["nofuncgraph-overrun", "funcgraph-cpu", "funcgraph-overhead", "nofuncgraph-proc",
                           "funcgraph-duration", "nofuncgraph-abstime", "funcgraph-irqs", "nofuncgraph-tail",
                           "sleep-time", "graph-time"]


def test_an_option_is_set_by_name_and_by_its_file():
    """trace_set_options() and trace_options_core_write() change the same flag."""
    s = boot("fixed")
    s.tracefs.write("trace_options", "nomarkers")
    assert s.tracefs.read("options/markers") == "0\n"
    assert "nomarkers" in s.tracefs.read("trace_options").split()
    s.tracefs.write("options/markers", "1")
    assert "markers" in s.tracefs.read("trace_options").split()


def test_bad_option_writes_are_refused_with_einval():
    """trace_set_options(): an unknown name, or another tracer's option, is -EINVAL;
    trace_options_core_write(): only 0 and 1."""
    s = boot("fixed")
    for text in ("no-such-option", "funcgraph-proc", "x" * 80):
        with pytest.raises(TracefsError) as info:
            s.tracefs.write("trace_options", text)
        assert info.value.errno == errno.EINVAL, text
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("options/print-parent", "2")
    assert info.value.errno == errno.EINVAL
    assert "print-parent" in s.tracefs.read("trace_options").split()


def test_the_nop_tracers_test_options_accept_and_refuse():
    """nop_set_flag() (kernel/trace/trace_nop.c): test_nop_accept is taken, test_nop_refuse
    refused with -EINVAL, each saying so in the kernel log."""
    s = boot("fixed")
    s.tracefs.write("trace_options", "test_nop_accept")
    assert "test_nop_accept" in s.tracefs.read("trace_options").split()
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("trace_options", "test_nop_refuse")
    assert info.value.errno == errno.EINVAL
    assert "notest_nop_refuse" in s.tracefs.read("trace_options").split()
    assert "nop_test_accept flag set to 1: we accept." in s.dmesg()
    assert "nop_test_refuse flag set to 1: we refuse." in s.dmesg()


@pytest.mark.parametrize("variant, asks_nop", [("fixed", True), ("v4.8.17", False)])
def test_an_option_file_of_another_tracer_asks_the_current_tracer_before_v4_6(variant, asks_nop):
    """__set_tracer_option(): v4.5 calls tr->current_trace->set_flag() for any option file,
    so options/func_stack_trace (bit 0) under nop reaches nop_set_flag()'s accept branch;
    from v4.6 the option's own tracer (func_set_flag()) is asked."""
    s = boot(variant)
    s.tracefs.write("options/func_stack_trace", "1")
    assert s.tracefs.read("options/func_stack_trace") == "1\n"
    assert ("we accept" in s.dmesg()) == asks_nop


def test_print_parent_sym_offset_and_sym_addr_shape_function_lines():
    """trace_fn_trace() with seq_print_ip_sym(): the parent only with print-parent; %pS
    (name+off/size) with sym-offset; the address after it with sym-addr."""
    s = _traced()
    assert _events(s.tracefs.read("trace"))[0].endswith(": get_current_pid <-__x64_sys_getpid")
    s.tracefs.write("trace_options", "noprint-parent")
    assert _events(s.tracefs.read("trace"))[0].endswith(": get_current_pid")
    s.tracefs.write("trace_options", "sym-offset")
    s.tracefs.write("trace_options", "sym-addr")
    ip = s.symbol("get_current_pid")
    line = _events(s.tracefs.read("trace"))[0]
    assert re.search(rf": get_current_pid\+0x0/0x[0-9a-f]+ <{ip:016x}>$", line), line


def test_context_info_and_irq_info_shape_the_context():
    """trace_default_header() and trace_print_context(): without irq-info no flags column and
    the plain legend; without context-info no context and no legend at all."""
    s = _traced()
    s.tracefs.write("trace_options", "noirq-info")
    text = s.tracefs.read("trace")
    assert "#           TASK-PID   CPU#      TIMESTAMP  FUNCTION\n" in text and "irqs-off" not in text
    assert re.fullmatch(r" +<idle>-0 +\[000\] +\d+\.\d{6}: get_current_pid <-__x64_sys_getpid",
                        _events(text)[0])
    s.tracefs.write("trace_options", "nocontext-info")
    text = s.tracefs.read("trace")
    assert text == "# tracer: function\n#\nget_current_pid <-__x64_sys_getpid\n"


def test_raw_and_hex_print_the_fields():
    """print_raw_fmt()/trace_fn_raw(): `pid cpu ts ip parent` in decimal and hex; print_hex_fmt()
    with trace_seq_putmem_hex(): each field as wide as its type, then a newline."""
    s = _traced()
    entry = s.buffer.entries()[0]
    s.tracefs.write("trace_options", "raw")
    assert _events(s.tracefs.read("trace")) == [f"0 0 {entry.ts} {entry.ip:x} {entry.parent_ip:x}"]
    s.tracefs.write("trace_options", "hex")  # hex is tested before raw
    assert _events(s.tracefs.read("trace")) == [f"00000000 00000000 {entry.ts:016x} {entry.ip:016x} "
                                                f"{entry.parent_ip:016x} "]


def test_latency_format_prints_the_latency_header_and_relative_times():
    """print_trace_header() and trace_print_lat_context(): times in us since the buffer was
    reset, the delay mark of the gap to the next event; verbose adds the raw fields."""
    s = _traced(glob="get_current_pid\n__x64_sys_getpid")
    s.tracefs.write("trace_options", "latency-format")
    text = s.tracefs.read("trace")
    assert "# function latency trace v1.1.5 on 4.5.0\n" in text
    assert "# latency: 0 us, #2/2, CPU#0 | (M:server VP:0, KP:0, SP:0 HP:0 #P:2)\n" in text
    assert "#  cmd     pid   ||||| time  |   caller      \n" in text
    first, second = _events(text)
    start = s.buffer.time_start
    e0, e1 = s.buffer.entries()
    assert first == f"  <idle>-0       0.... {(e0.ts - start) // 1000:4d}us : __x64_sys_getpid <-do_syscall_64"
    assert second.startswith(f"  <idle>-0       0.... {(e1.ts - start) // 1000:4d}us : get_current_pid")
    s.tracefs.write("trace_options", "verbose")
    verbose = _events(s.tracefs.read("trace"))
    assert verbose[1].startswith("          <idle>     0   0 0 00000000 00000001 [")


def test_markers_off_refuses_trace_marker_writes():
    """tracing_mark_write(): -EINVAL when the markers option is off."""
    s = boot("fixed")
    s.tracefs.write("options/markers", "0")
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("trace_marker", "hello")
    assert info.value.errno == errno.EINVAL


def test_without_overwrite_a_full_buffer_keeps_its_oldest_events():
    """The overwrite option (ring_buffer_change_overwrite()): off, a full buffer drops the new
    events instead of the oldest, and nothing is counted as overwritten."""
    s = boot("fixed")
    s.tracefs.write("buffer_size_kb", "1")
    s.tracefs.write("options/overwrite", "0")
    s.tracefs.write("current_tracer", "function")
    s.call("workload_run", 2)
    kept = s.buffer.entries()
    assert len(kept) == s.buffer.entries_per_cpu
    assert s.env.sym_short(kept[0].ip) == "workload_run"
    assert "# entries-in-buffer/entries-written: 32/32   #P:2" in s.tracefs.read("trace")


def test_graph_options_choose_the_columns():
    """__print_graph_headers_flags() and print_graph_prologue(): absolute time, CPU, task and
    duration columns as funcgraph-abstime/-cpu/-proc/-duration say; funcgraph-tail names the
    function a brace closes."""
    s = _traced(tracer="function_graph", glob="__x64_sys_getpid\nget_current_pid")
    for option in ("funcgraph-abstime", "funcgraph-proc", "nofuncgraph-cpu", "funcgraph-tail"):
        s.tracefs.write("trace_options", option)
    text = s.tracefs.read("trace")
    assert "#     TIME         TASK/PID         DURATION                  FUNCTION CALLS\n" in text
    lines = _events(text)
    assert re.fullmatch(r" +\d+\.\d{6} \|     <idle>-0    \|               \|  __x64_sys_getpid\(\) \{", lines[0])
    assert lines[-1].endswith("|  } /* __x64_sys_getpid */")
    s.tracefs.write("trace_options", "nofuncgraph-duration")
    assert _events(s.tracefs.read("trace"))[1].endswith("|     <idle>-0    |   get_current_pid();")


def test_the_graph_shows_a_task_switch_on_a_cpu():
    """verif_pid(): when a CPU's task changes between two events, a banner names both."""
    s = _traced(tracer="function_graph", glob="get_current_pid")
    s.cpus[0].set_task(Task("bash", 1042))
    s.call("workload_getpid")
    text = s.tracefs.read("trace")
    assert (" ------------------------------------------\n"
            " 0)    <idle>-0    =>   bash-1042   \n"
            " ------------------------------------------\n\n") in text


def test_graph_overrun_counts_calls_too_deep_for_the_return_stack():
    """print_graph_return() with funcgraph-overrun: each return says the task's overrun count."""
    s = _traced(tracer="function_graph", glob="__x64_sys_getpid\nget_current_pid")
    s.tracefs.write("trace_options", "funcgraph-overrun")
    closing, overrun = _events(s.tracefs.read("trace"))[-2:]
    assert re.fullmatch(r" 0\)   \d\.\d{3} us    \|  \}", closing) and overrun == " (Overruns: 0)"


def test_bin_prints_the_fields_bytes_and_other_events_their_type():
    """print_bin_fmt() and trace_fn_bin(): pid, cpu (ints) and ts, then ip and parent_ip, as
    they are in memory; a print event has no binary printer: trace_nop_print()'s `type: 5`."""
    import struct

    s = _traced()
    entry = s.buffer.entries()[0]
    s.tracefs.write("trace_marker", "hi")
    marker = s.buffer.entries()[1]
    s.tracefs.write("trace_options", "bin")
    raw = s.tracefs.read("trace").encode("utf-8", "surrogateescape")
    head = raw.index(b"#              | |")  # after the last header line
    body = raw[raw.index(b"\n", head) + 1:]
    assert body == (struct.pack("<iiQQQ", 0, 0, entry.ts, entry.ip, entry.parent_ip)
                    + struct.pack("<iiQ", 0, 0, marker.ts) + b"type: 5\n")


def test_printk_msg_only_prints_a_markers_text_alone():
    """print_trace_line(): with trace_printk and printk-msg-only, trace_print_printk_msg_only()."""
    s = boot("fixed")
    s.tracefs.write("trace_marker", "just this")
    s.tracefs.write("trace_options", "printk-msg-only")
    assert _events(s.tracefs.read("trace")) == ["just this"]


def test_the_graph_leaves_function_and_stack_events_to_the_default_printers():
    """print_graph_function_flags(): TRACE_FN and TRACE_STACK are UNHANDLED, so a stack-trace
    probe's event prints with its context, as under the function tracer."""
    s = boot("fixed")
    s.tracefs.write("set_graph_function", "__x64_sys_getpid")
    s.tracefs.write("set_ftrace_filter", "get_current_pid:stacktrace")
    s.tracefs.write("current_tracer", "function_graph")
    s.call("workload_getpid")
    lines = _events(s.tracefs.read("trace"))
    at = next(i for i, line in enumerate(lines) if "<stack trace>" in line)
    assert re.fullmatch(r" +sh-1042 +\[000\] \.\.\.\. +\d+\.\d{6}: <stack trace>", lines[at]) or \
        re.fullmatch(r" +<idle>-0 +\[000\] \.\.\.\. +\d+\.\d{6}: <stack trace>", lines[at])
    assert lines[at + 1].startswith(" => ")
