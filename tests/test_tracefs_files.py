"""The smaller tracefs files: trace_marker (tracing_mark_write(), kernel/trace/trace.c, v4.4-v4.8,
printed by trace_print_print() / print_graph_comment()), tracing_cpumask, set_event and
events/enable (kernel/trace/trace_events.c, v4.8), and README."""

from __future__ import annotations

import errno
import json

import pytest

from ftrace_core.errors import TracefsError
from ftrace_core.output import format_json_lines
from ftrace_core.system import boot


def _events(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_a_marker_is_a_print_event_in_the_function_trace():
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "get_current_pid")
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("trace_marker", "before")
    s.call("workload_getpid")
    s.tracefs.write("trace_marker", "after")
    lines = _events(s.tracefs.read("trace"))
    assert [line.split(": ", 1)[1] for line in lines] == [
        "tracing_mark_write: before", "get_current_pid <-__x64_sys_getpid", "tracing_mark_write: after"]
    stamps = [float(line.split()[3].rstrip(":")) for line in lines]
    assert stamps == sorted(stamps)


def test_a_marker_is_a_comment_in_the_graph():
    s = boot("fixed")
    s.tracefs.write("set_graph_function", "__x64_sys_getpid")
    s.tracefs.write("current_tracer", "function_graph")
    s.call("workload_getpid")
    s.tracefs.write("trace_marker", "done")
    assert _events(s.tracefs.read("trace"))[-1] == " 0)               |  /* done */"


def test_trace_pipe_consumes_markers_and_json_keeps_them():
    s = boot("fixed")
    s.tracefs.write("trace_marker", "test input 1")
    assert "test input 1" in s.tracefs.read("trace")
    assert s.tracefs.read("trace_pipe").endswith("tracing_mark_write: test input 1\n")
    assert "test input 1" not in s.tracefs.read("trace")
    s.tracefs.write("trace_marker", "x" * 1500)  # TRACE_BUF_SIZE: 1024 bytes an event
    record = json.loads(format_json_lines(s.buffer.entries(), s.describe).splitlines()[0])
    assert record["type"] == "print" and record["text"] == "x" * 1024 + "\n"


def test_marker_errors_are_the_kernels():
    s = boot("fixed")
    with pytest.raises(TracefsError) as info:
        s.tracefs.read("trace_marker")  # no .read
    assert info.value.errno == errno.EINVAL
    s.tracefs.write("tracing_on", "0")
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("trace_marker", "lost")  # the ring buffer refuses: -EBADF
    assert info.value.errno == errno.EBADF


def test_tracing_cpumask_keeps_only_the_cpus_in_it():
    """tracing_cpumask_read() / tracing_cpumask_write() (kernel/trace/trace.c, v4.4-v4.8)."""
    s = boot("fixed")
    fs = s.tracefs
    assert fs.read("tracing_cpumask") == "3\n"
    fs.write("set_ftrace_filter", "get_current_pid")
    fs.write("current_tracer", "function")
    fs.write("tracing_cpumask", "2")
    assert fs.read("tracing_cpumask") == "2\n"
    s.call("workload_getpid", cpu=0)
    s.call("workload_getpid", cpu=1)
    cpus = {line.split()[1] for line in _events(fs.read("trace"))}
    assert cpus == {"[001]"}
    for bad, err in (("xyz", errno.EINVAL), ("1,00000000,00000000", errno.EOVERFLOW)):
        with pytest.raises(TracefsError) as info:
            fs.write("tracing_cpumask", bad)
        assert info.value.errno == err
    fs.write("tracing_cpumask", "ff")  # CPUs that do not exist are ignored
    assert fs.read("tracing_cpumask") == "3\n"


def test_readme_names_the_files_this_tracefs_serves():
    s = boot("fixed")
    s.tracefs.mkdir("instances/foo")  # an instance's files are its own directory's business
    listed = [line.strip() for line in s.tracefs.read("README").splitlines()[2:]]
    assert listed[:-1] == [name for name in s.tracefs.files if name != "README" and not name.startswith("instances/")]
    assert listed[-1].startswith("instances/")


def test_set_event_takes_no_event_name_as_ftrace_event_write():
    """ftrace_event_write() (kernel/trace/trace_events.c, v4.8): one token a write; the only
    events are ftrace's own (TRACE_EVENT_FL_IGNORE_ENABLE), so any name is -EINVAL and the
    file reads empty; a write of blanks (echo > set_event) is fine."""
    s = boot("fixed")
    assert s.tracefs.read("set_event") == ""
    s.tracefs.write("set_event", "")
    for name in ("sched:sched_switch", "ftrace:function", "!sched"):
        with pytest.raises(TracefsError) as info:
            s.tracefs.write("set_event", name)
        assert info.value.errno == errno.EINVAL


def test_events_enable_as_system_enable_write():
    """system_enable_write() (kernel/trace/trace_events.c, v4.8): 0 or 1, else -EINVAL;
    reading shows 0 (no event is on)."""
    s = boot("fixed")
    assert s.tracefs.read("events/enable") == "0\n"
    s.tracefs.write("events/enable", "0")
    for value, err in (("1", errno.EINVAL), ("2", errno.EINVAL), ("x", errno.EINVAL)):
        with pytest.raises(TracefsError) as info:
            s.tracefs.write("events/enable", value)
        assert info.value.errno == err
