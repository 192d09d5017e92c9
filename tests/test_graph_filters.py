"""set_graph_function, set_graph_notrace and max_graph_depth, as v4.4-v4.8 do them:
kernel/trace/ftrace.c ftrace_graph_write() / ftrace_set_func() / g_show(), and
kernel/trace/trace_functions_graph.c trace_graph_entry() with ftrace_push_return_trace()'s
FTRACE_NOTRACE_DEPTH."""

from __future__ import annotations

import errno
import re

import pytest

from ftrace_core.errors import TracefsError
from ftrace_core.invariants import CallAudit, check
from ftrace_core.system import boot
from ftrace_core.tracer import FTRACE_GRAPH_MAX_FUNCS


def _graph(s, *calls) -> list[str]:
    s.tracefs.write("current_tracer", "function_graph")
    for name, *args in calls:
        s.call(name, *args)
    return [line for line in s.tracefs.read("trace").splitlines() if not line.startswith("#")]


def _funcs(lines) -> list[str]:
    return [re.sub(r"[(){};]", "", line.split("|", 1)[1]).strip() for line in lines if line.split("|", 1)[1].strip() != "}"]


def test_empty_tables_read_as_the_kernel_says():
    s = boot("fixed")
    assert s.tracefs.read("set_graph_function") == "#### all functions enabled ####\n"
    assert s.tracefs.read("set_graph_notrace") == "#### no functions disabled ####\n"
    assert s.tracefs.read("max_graph_depth") == "0\n"


def test_set_graph_function_traces_only_what_runs_inside_it():
    s = boot("fixed")
    s.tracefs.write("set_graph_function", "__x64_sys_getpid")
    funcs = _funcs(_graph(s, ("workload_getpid",), ("kmalloc", 16)))
    assert funcs == ["__x64_sys_getpid", "get_current_pid"]


def test_set_graph_notrace_hides_a_function_and_everything_under_it():
    s = boot("fixed")
    s.tracefs.write("set_graph_function", "do_syscall_64")
    s.tracefs.write("set_graph_notrace", "syscall_exit_to_user_mode")
    funcs = _funcs(_graph(s, ("workload_getpid",)))
    assert funcs[:3] == ["do_syscall_64", "syscall_enter_from_user_mode", "enter_from_user_mode"]
    assert "syscall_exit_to_user_mode" not in funcs and "schedule" not in funcs
    assert funcs[-2:] == ["__x64_sys_getpid", "get_current_pid"]


def test_max_graph_depth_cuts_the_graph():
    s = boot("fixed")
    s.tracefs.write("set_graph_function", "do_syscall_64")
    s.tracefs.write("max_graph_depth", "1")
    assert _funcs(_graph(s, ("workload_getpid",))) == ["do_syscall_64"]
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("max_graph_depth", "x")
    assert info.value.errno == errno.EINVAL


def test_writes_add_truncate_remove_and_refuse_as_ftrace_set_func():
    s = boot("fixed")
    fs = s.tracefs
    fs.write("set_graph_function", "vfs_read")
    fs.write("set_graph_function", "vfs_write", append=True)
    assert fs.read("set_graph_function") == "vfs_read\nvfs_write\n"
    fs.write("set_graph_function", "!vfs_read", append=True)  # the last one moves into the hole
    assert fs.read("set_graph_function") == "vfs_write\n"
    with pytest.raises(TracefsError) as info:
        fs.write("set_graph_function", "no_such_function", append=True)
    assert info.value.errno == errno.EINVAL
    fs.write("set_graph_function", "*")  # more than FTRACE_GRAPH_MAX_FUNCS match: the table fills
    assert len(fs.read("set_graph_function").split()) == FTRACE_GRAPH_MAX_FUNCS
    with pytest.raises(TracefsError) as info:
        fs.write("set_graph_function", "vfs_read", append=True)
    assert info.value.errno == errno.EBUSY


def test_the_call_audit_holds_with_graph_filters():
    """calls_traced under function_graph with set_graph_function, set_graph_notrace and
    max_graph_depth: what they leave out is not a loss, everything else is traced once."""
    s = boot("fixed")
    audit = CallAudit(s)
    audit.install()
    s.tracefs.write("set_graph_function", "do_syscall_64")
    s.tracefs.write("set_graph_notrace", "schedule")
    s.tracefs.write("max_graph_depth", "4")
    _graph(s, ("workload_getpid",), ("workload_run", 1))
    audit.finish()
    holds, why = check(s, audit)
    assert holds["calls_traced"], why["calls_traced"]
    assert audit.counted > 10
