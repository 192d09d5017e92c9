"""instances/ (kernel/trace/trace.c instance_mkdir(), instance_rmdir(), init_tracer_tracefs(),
trace_ok_for_array(); kernel/trace/trace_functions.c allocate_ftrace_ops(), v4.5 and v4.8.17),
and tracing_thresh / tracing_max_latency (tracing_nsecs_read/write(), graph_trace_init())."""

from __future__ import annotations

import errno

import pytest

from ftrace_core.errors import TracefsError
from ftrace_core.system import boot


def _events(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _raises(errno_: int, fn, *args) -> None:
    with pytest.raises(TracefsError) as info:
        fn(*args)
    assert info.value.errno == errno_, info.value


def test_mkdir_makes_a_trace_array_with_the_instance_files():
    """init_tracer_tracefs(): an instance has the trace array's files, not the files of the
    whole of ftrace (available_filter_functions, set_graph_function, README...)."""
    s = boot("fixed")
    s.tracefs.mkdir("instances/foo")
    names = {f[len("instances/foo/"):] for f in s.tracefs.files if f.startswith("instances/foo/")}
    assert {"trace", "trace_pipe", "current_tracer", "available_tracers", "tracing_on", "trace_options",
            "trace_clock", "trace_marker", "tracing_cpumask", "buffer_size_kb", "buffer_total_size_kb",
            "free_buffer", "snapshot", "set_ftrace_filter", "set_ftrace_notrace", "tracing_max_latency",
            "set_event", "events/enable", "per_cpu/cpu1/trace_pipe", "options/overwrite"} <= names
    assert not names & {"available_filter_functions", "set_graph_function", "README", "saved_cmdlines",
                        "options/record-cmd", "options/trace_printk", "options/funcgraph-proc"}
    assert s.tracefs.read("instances/foo/available_tracers") == "function nop\n"
    assert s.tracefs.read("instances/foo/current_tracer") == "nop\n"


def test_mkdir_and_rmdir_errors_are_the_kernels():
    """instance_mkdir(): -EEXIST for a name in use; tracefs's other directories have no
    ->mkdir (-EPERM); instance_rmdir(): -ENODEV for no such instance."""
    s = boot("fixed")
    s.tracefs.mkdir("instances/foo")
    _raises(errno.EEXIST, s.tracefs.mkdir, "instances/foo")
    _raises(errno.EPERM, s.tracefs.mkdir, "options/foo")
    _raises(errno.EPERM, s.tracefs.mkdir, "instances")
    _raises(errno.ENODEV, s.tracefs.rmdir, "instances/bar")
    _raises(errno.EINVAL, s.tracefs.write, "instances/foo/current_tracer", "function_graph")  # no allow_instances


def test_an_instance_traces_with_its_own_ops_filter_and_buffer():
    """allocate_ftrace_ops(): the instance's own ops (DYNAMIC, so always through
    ftrace_ops_list_func) with its own filter; events go to its own buffer."""
    s = boot("fixed")
    s.tracefs.mkdir("instances/foo")
    s.tracefs.write("instances/foo/set_ftrace_filter", "get_current_pid")
    s.tracefs.write("instances/foo/current_tracer", "function")
    assert s.ftrace.ftrace_trace_function == s.symbol("ftrace_ops_list_func")
    s.tracefs.write("set_ftrace_filter", "__x64_sys_getpid")
    s.tracefs.write("current_tracer", "function")
    s.call("workload_getpid")
    s.tracefs.write("instances/foo/trace_marker", "in foo")
    mine = _events(s.tracefs.read("instances/foo/trace"))
    top = _events(s.tracefs.read("trace"))
    assert [line.split(": ", 1)[1] for line in mine] == ["get_current_pid <-__x64_sys_getpid",
                                                          "tracing_mark_write: in foo"]
    assert [line.split(": ", 1)[1] for line in top] == ["__x64_sys_getpid <-do_syscall_64"]
    assert s.tracefs.read("instances/foo/set_ftrace_filter") == "get_current_pid\n"
    s.tracefs.write("instances/foo/tracing_on", "0")
    s.tracefs.write("instances/foo/trace", "")
    s.call("workload_getpid")
    assert not _events(s.tracefs.read("instances/foo/trace")) and len(_events(s.tracefs.read("trace"))) == 2


def test_an_instance_starts_with_the_top_levels_options_then_keeps_its_own():
    """instance_mkdir(): tr->trace_flags = global_trace.trace_flags; the tracers' own flags
    are the tracer's, shared."""
    s = boot("fixed")
    s.tracefs.write("options/print-parent", "0")
    s.tracefs.mkdir("instances/foo")
    assert s.tracefs.read("instances/foo/options/print-parent") == "0\n"
    s.tracefs.write("instances/foo/options/print-parent", "1")
    assert s.tracefs.read("options/print-parent") == "0\n"
    s.tracefs.write("instances/foo/options/test_nop_accept", "1")
    assert s.tracefs.read("options/test_nop_accept") == "1\n"
    s.tracefs.write("instances/foo/trace_clock", "global")
    assert s.tracefs.read("trace_clock").startswith("[local]")


def test_rmdir_is_refused_while_a_file_is_open_and_stops_the_tracer():
    """instance_rmdir(): -EBUSY while tr->ref (an open file) is held; then tracing_set_nop()
    unregisters its ops and the call sites go back to nops."""
    s = boot("fixed")
    s.tracefs.mkdir("instances/foo")
    s.tracefs.write("instances/foo/set_ftrace_filter", "get_current_pid")
    s.tracefs.write("instances/foo/current_tracer", "function")
    site = s.symbol("get_current_pid")
    assert s.read(site, 1) == b"\xe8"  # call
    held = s.tracefs.open("instances/foo/trace_pipe")
    _raises(errno.EBUSY, s.tracefs.rmdir, "instances/foo")
    held.release()
    s.tracefs.rmdir("instances/foo")
    assert not any(f.startswith("instances/foo/") for f in s.tracefs.files)
    assert not s.ftrace.ops_list and s.read(site, 5) == bytes.fromhex("0f1f440000")
    s.tracefs.mkdir("instances/foo")  # the name is free again
    assert s.tracefs.read("instances/foo/set_ftrace_filter") == "#### all functions enabled ####\n"


@pytest.mark.parametrize("variant", ["fixed", "v4.8.17"])
def test_tracing_thresh_keeps_only_slow_returns(variant):
    """graph_trace_init() with tracing_thresh: trace_graph_thresh_entry() records no entry,
    trace_graph_thresh_return() only returns that took at least the threshold (us)."""
    s = boot(variant)
    s.tracefs.write("current_tracer", "function_graph")
    s.tracefs.write("tracing_thresh", "2")
    assert s.tracefs.read("tracing_thresh") == "2\n"
    s.call("workload_getpid")
    entries = s.buffer.entries()
    assert entries and all(e.exit and e.duration >= 2000 for e in entries)
    assert all("/* " in line for line in _events(s.tracefs.read("trace")) if "}" in line)
    s.tracefs.write("tracing_thresh", "0")
    s.tracefs.write("trace", "")
    s.call("workload_getpid")
    assert any(not e.exit for e in s.buffer.entries())


def test_tracing_max_latency_reads_back_microseconds():
    """tracing_nsecs_write()/read(): microseconds in, kept as ns, shown as microseconds."""
    s = boot("fixed")
    assert s.tracefs.read("tracing_max_latency") == "0\n"
    s.tracefs.write("tracing_max_latency", "1500")
    assert s.tracefs.read("tracing_max_latency") == "1500\n"
    _raises(errno.EINVAL, s.tracefs.write, "tracing_max_latency", "-1")


@pytest.mark.parametrize("variant, has_file", [("fixed", False), ("v4.8.17", True)])
def test_an_instance_filters_its_own_pids_from_v4_7(variant, has_file):
    """ftrace_init_tracefs(tr, ...) (v4.7 on): set_ftrace_pid in every trace array, for the
    array's own ops (ops->private); v4.5 has only the top level's."""
    from emu.cpu import Task

    s = boot(variant)
    s.tracefs.mkdir("instances/foo")
    assert ("instances/foo/set_ftrace_pid" in s.tracefs.files) == has_file
    if not has_file:
        return
    s.cpus[0].set_task(Task("bash", 1042))
    s.cpus[1].set_task(Task("sh", 1043))
    for prefix in ("instances/foo/", ""):
        s.tracefs.write(prefix + "set_ftrace_filter", "get_current_pid")
    s.tracefs.write("instances/foo/set_ftrace_pid", "1043")
    s.tracefs.write("instances/foo/current_tracer", "function")
    s.tracefs.write("current_tracer", "function")
    s.call("workload_getpid", cpu=0)
    s.call("workload_getpid", cpu=1)
    assert [e.pid for e in s.tracefs.top.buffer.entries()] == [1043, 1042]
    assert [e.pid for e in s.tracefs.instances["foo"].buffer.entries()] == [1043]
    s.tracefs.rmdir("instances/foo")  # ftrace_clear_pids(): its switch probe goes too
    assert all(len(cpu.switch_probes) == 1 for cpu in s.cpus)
