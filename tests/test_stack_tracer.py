"""The stack tracer: stack_trace, stack_max_size, stack_trace_filter and the
kernel.stack_tracer_enabled sysctl, as kernel/trace/trace_stack.c (the same file in v4.5.0
and v4.8.17) does them, measuring the emulated CPUs' own stacks."""

from __future__ import annotations

import errno
import re

import pytest

from ftrace_core.errors import TracefsError
from ftrace_core.kernels import VARIANTS
from ftrace_core.sysctl import SysctlError
from ftrace_core.system import boot
from ftrace_core.tracers.stack import STACK_TRACE_DISABLED

HEADER = re.compile(r"^        Depth    Size   Location    \((\d+) entries\)\n        -----    ----   --------\n")
ROW = re.compile(r"^ *(\d+)\) +(\d+) +(\d+)   (\w+)\+0x([0-9a-f]+)/0x[0-9a-f]+$")


def _table(s) -> list[tuple[int, int, int, str, int]]:
    """(index, depth, size, function, offset) of each stack_trace row, checking the format."""
    text = s.tracefs.read("stack_trace")
    m = HEADER.match(text)
    assert m, text
    rows = []
    for line in text[m.end():].splitlines():
        row = ROW.match(line)
        assert row, line
        rows.append((int(row[1]), int(row[2]), int(row[3]), row[4], int(row[5], 16)))
    assert len(rows) == int(m[1])
    return rows


def _enabled(s, on: int = 1):
    s.set_sysctl("kernel.stack_tracer_enabled", on)


def test_disabled_notice_until_enabled():
    """t_show(): with the tracer off and no maximum yet, print_disabled() follows the header."""
    s = boot("fixed")
    assert s.tracefs.read("stack_trace") == (
        "        Depth    Size   Location    (0 entries)\n        -----    ----   --------\n" + STACK_TRACE_DISABLED)
    assert s.tracefs.read("stack_max_size") == "0\n"
    assert s.sysctl("kernel.stack_tracer_enabled") == "0\n"
    assert s.tracefs.read("stack_trace_filter") == "#### all functions enabled ####\n"
    assert {n: s.tracefs.modes[n] for n in ("stack_trace", "stack_max_size", "stack_trace_filter")} == {
        "stack_trace": 0o444, "stack_max_size": 0o644, "stack_trace_filter": 0o444}


def test_the_table_is_the_deepest_chain_with_depths_measured_on_the_guest_stack():
    """check_stack(): row 0 is the traced call (ip + MCOUNT_INSN_SIZE) and its depth is
    stack_max_size; each return address of the chain is found in the stack in order, its
    depth counted from the stack's top (the host's return trap sits 72 bytes below it) and
    each size the difference to the next row's depth."""
    s = boot("fixed")
    _enabled(s)
    s.call("workload_getpid")
    rows = _table(s)
    assert rows[0][1] == int(s.tracefs.read("stack_max_size"))
    assert rows[0][4] == 5  # the traced function's own call site returned to
    assert rows[-1][1:4] == (72, 72, "guest_return_trap")
    depths = [r[1] for r in rows]
    assert depths == sorted(depths, reverse=True)
    assert all(a[2] == a[1] - b[1] for a, b in zip(rows, rows[1:]))
    chain = [r[3] for r in rows]
    # the call chain, innermost first: do_syscall_64 was called from workload_getpid
    assert chain.index("schedule") < chain.index("do_syscall_64") < chain.index("workload_getpid")


def test_a_deeper_call_chain_gives_a_larger_maximum():
    """check_stack() keeps the largest depth seen: the open path of workload_run goes deeper
    than getpid's, and a shallower call afterwards changes nothing."""
    s = boot("fixed")
    _enabled(s)
    s.call("workload_getpid")
    shallow = int(s.tracefs.read("stack_max_size"))
    s.call("workload_run", 1)
    deep = int(s.tracefs.read("stack_max_size"))
    assert deep > shallow
    table = s.tracefs.read("stack_trace")
    s.call("workload_getpid")
    assert s.tracefs.read("stack_trace") == table
    assert "do_sys_open" in [r[3] for r in _table(s)]


def test_stack_max_size_write_starts_over():
    """stack_max_size_write(): the value becomes the maximum; 0 lets the next call set a new
    table; kstrtoul's -EINVAL for anything but a number."""
    s = boot("fixed")
    _enabled(s)
    s.call("workload_run", 1)
    s.tracefs.write("stack_max_size", "0")
    assert s.tracefs.read("stack_max_size") == "0\n"
    s.call("workload_getpid")
    assert "workload_getpid" in [r[3] for r in _table(s)]
    s.tracefs.write("stack_max_size", "100000")
    s.call("workload_run", 1)
    assert s.tracefs.read("stack_max_size") == "100000\n"
    for bad in ("x", "-1", "12 3"):
        with pytest.raises(TracefsError) as info:
            s.tracefs.write("stack_max_size", bad)
        assert info.value.errno == errno.EINVAL


def test_stack_trace_filter_is_a_filter_file_on_the_tracers_own_ops():
    """stack_trace_filter_open(): ftrace_regex_open(&trace_ops, FTRACE_ITER_FILTER): globs,
    -EINVAL for no match, the hash committed at close; only the filtered functions call
    stack_trace_call, so the table starts at one of them (func_stack_tracer.tc)."""
    s = boot("fixed")
    s.tracefs.write("stack_trace_filter", "*lock*")
    listed = s.tracefs.read("stack_trace_filter").splitlines()
    assert listed and all("lock" in name for name in listed)
    assert s.tracefs.read("set_ftrace_filter") == "#### all functions enabled ####\n"
    _enabled(s)
    enabled = s.tracefs.read("enabled_functions").splitlines()
    assert sorted(line.split()[0] for line in enabled) == sorted(listed)
    assert all(line.endswith("->stack_trace_call+0x0/0x1") or "stack_trace_call" in line for line in enabled)
    s.call("workload_run", 1)
    assert "lock" in _table(s)[0][3]
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("stack_trace_filter", "no_such_function_anywhere")
    assert info.value.errno == errno.EINVAL
    assert s.tracefs.read("stack_trace_filter") == "#### all functions enabled ####\n"


def test_the_sysctl_registers_and_unregisters_trace_ops():
    """stack_trace_sysctl(): proc_dointvec() stores any int; only a change of its truth
    registers or unregisters trace_ops."""
    s = boot("fixed")
    _enabled(s, 2)
    assert s.sysctl("kernel/stack_tracer_enabled") == "2\n"
    assert s.stack_tracer.trace_ops in s.ftrace.ops_list
    _enabled(s, 1)
    assert s.ftrace.ops_list.count(s.stack_tracer.trace_ops) == 1
    _enabled(s, 0)
    assert s.ftrace.ops_list == [] and s.tracefs.read("enabled_functions") == ""
    max_size = s.tracefs.read("stack_max_size")
    s.call("workload_run", 1)
    assert s.tracefs.read("stack_max_size") == max_size


@pytest.mark.parametrize("text", ["abc", "", "1x", "99999999999"])
def test_bad_sysctl_values_are_einval(text):
    """__do_proc_dointvec(): not a number, nothing written, trailing junk or past INT_MAX."""
    s = boot("fixed")
    with pytest.raises(SysctlError) as info:
        s.sysctls.write("kernel.stack_tracer_enabled", text)
    assert info.value.errno == errno.EINVAL
    assert s.sysctl("kernel.stack_tracer_enabled") == "0\n"


def test_sysctl_numbers_and_names():
    """proc_dointvec() takes base-0 numbers and blanks around them; an unknown name is
    -ENOENT (no such file under /proc/sys)."""
    s = boot("fixed")
    s.sysctls.write("kernel.stack_tracer_enabled", "  0x10\n")
    assert s.sysctl("kernel.stack_tracer_enabled") == "16\n"
    with pytest.raises(SysctlError) as info:
        s.sysctl("kernel.no_such_knob")
    assert info.value.errno == errno.ENOENT


def test_function_graph_filter_holds_with_the_stack_tracer_on():
    """ftrace_graph_entry_test() (update_function_graph_func(), v4.5/v4.8): with trace_ops
    registered too, the graph caller sees every function, but only set_ftrace_filter's are
    graphed (fgraph-filter-stack.tc); and after the stack tracer is off, still only those."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "schedule")
    s.tracefs.write("current_tracer", "function_graph")
    _enabled(s)
    s.call("workload_run", 1)

    def graphed():
        return [line for line in s.tracefs.read("trace").splitlines() if "()" in line]

    lines = graphed()
    assert lines and all("schedule();" in line for line in lines)
    _enabled(s, 0)
    s.tracefs.write("trace", "")
    s.call("workload_run", 1)
    lines = graphed()
    assert lines and all("schedule();" in line for line in lines)


def test_with_function_graph_the_stack_shows_return_to_handler():
    """save_stack_trace() on a stack whose return addresses the graph tracer replaced:
    return_to_handler is what is on the stack, and what check_stack() finds there."""
    s = boot("fixed")
    s.tracefs.write("current_tracer", "function_graph")
    _enabled(s)
    s.call("workload_getpid")
    assert "return_to_handler" in [r[3] for r in _table(s)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_tree_traces_the_stack_alike(variant):
    """trace_stack.c is the same file in the trees the variants model."""
    s = boot(variant)
    _enabled(s)
    s.call("workload_getpid")
    rows = _table(s)
    assert rows[-1][3] == "guest_return_trap" and rows[0][1] == int(s.tracefs.read("stack_max_size"))
