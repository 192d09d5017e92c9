"""set_ftrace_pid, as each variant's tree has it: v4.5.0 (legacy/seed/fixed) keeps a global
list of pids and flags their tasks (kernel/trace/ftrace.c ftrace_pid_write(), ftrace_pid_add(),
fpid_show(), ftrace_pid_func()); v4.8.17 keeps the trace array's pid bitmap and a per-CPU
ftrace_ignore_pid set by a sched_switch probe (ftrace_pid_write(), trace.c trace_pid_write(),
ftrace_filter_pid_sched_switch_probe())."""

from __future__ import annotations

import errno
import re

import pytest

from emu.cpu import Task
from ftrace_core.errors import TracefsError
from ftrace_core.kernels import PID_PER_TRACE_ARRAY, kernel_tree
from ftrace_core.system import boot
from ftrace_core.tracefs import READABLE_FILES, WRITABLE_FILES

OLD, NEW = "fixed", "v4.8.17"


def _pids_in_trace(s) -> set[int]:
    lines = [line for line in s.tracefs.read("trace").splitlines() if not line.startswith("#")]
    return {int(re.match(r"\s*\S+-(\d+)\s", line).group(1)) for line in lines}


def _run_as(s, cpu: int, comm: str, pid: int) -> None:
    s.cpus[cpu].set_task(Task(comm, pid))
    s.call("workload_getpid", cpu=cpu)


def test_the_file_is_listed_with_the_trees_mode():
    # ftrace_init_tracefs(): trace_create_file("set_ftrace_pid", 0644, ...) in both trees
    assert "set_ftrace_pid" in READABLE_FILES and "set_ftrace_pid" in WRITABLE_FILES
    assert boot(OLD).tracefs.modes["set_ftrace_pid"] == 0o644
    assert kernel_tree(NEW).has(PID_PER_TRACE_ARRAY) and not kernel_tree(OLD).has(PID_PER_TRACE_ARRAY)


@pytest.mark.parametrize("variant", [OLD, NEW])
def test_empty_list_reads_no_pid(variant):
    # fpid_show(): "no pid" when nothing is set (both trees)
    assert boot(variant).tracefs.read("set_ftrace_pid") == "no pid\n"


@pytest.mark.parametrize("variant", [OLD, NEW])
def test_function_tracer_follows_only_the_listed_pid(variant):
    # ftrace_pid_func(): v4.5 tests current's trace flag, v4.8 the CPU's ftrace_ignore_pid
    s = boot(variant)
    s.cpus[0].set_task(Task("bash", 1042))
    s.tracefs.write("set_ftrace_pid", "1042")
    s.tracefs.write("current_tracer", "function")
    _run_as(s, 0, "bash", 1042)
    _run_as(s, 0, "sshd", 812)
    _run_as(s, 1, "kworker/1:1", 27)
    assert _pids_in_trace(s) == {1042}
    # the trampoline calls ftrace_pid_func, as ftrace_update_pid_func() set it
    assert "->ftrace_pid_func" in s.tracefs.read("enabled_functions")


@pytest.mark.parametrize("variant", [OLD, NEW])
def test_truncating_open_clears_and_tracing_follows_everyone_again(variant):
    # ftrace_pid_open(): O_TRUNC -> ftrace_pid_reset(); the ops calls its own func again
    s = boot(variant)
    s.cpus[0].set_task(Task("bash", 1042))
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("set_ftrace_pid", "1042")
    s.tracefs.write("set_ftrace_pid", "")
    assert s.tracefs.read("set_ftrace_pid") == "no pid\n"
    _run_as(s, 0, "bash", 1042)
    _run_as(s, 1, "sshd", 812)
    assert _pids_in_trace(s) == {1042, 812}
    assert "->function_trace_call" in s.tracefs.read("enabled_functions")


def test_v45_lists_newest_first_and_zero_is_the_swapper_tasks():
    # ftrace_pid_add(): list_add() at the head; fpid_show(): "swapper tasks" for pid 0
    s = boot(OLD)
    s.cpus[0].set_task(Task("bash", 1042))
    s.cpus[1].set_task(Task("sshd", 812))
    s.tracefs.write("set_ftrace_pid", "812")
    s.tracefs.write("set_ftrace_pid", "1042", append=True)
    s.tracefs.write("set_ftrace_pid", "0", append=True)
    s.tracefs.write("set_ftrace_pid", "812", append=True)  # already listed: no change
    assert s.tracefs.read("set_ftrace_pid") == "swapper tasks\n1042\n812\n"


def test_v48_lists_in_pid_order_and_takes_several_a_write():
    # trace_pid_write(): tokens, kstrtoul(.., 0, ..), any pid below pid_max; trace_pid_show()
    s = boot(NEW)
    s.tracefs.write("set_ftrace_pid", "812 0x10 1042")
    s.tracefs.write("set_ftrace_pid", "5", append=True)
    assert s.tracefs.read("set_ftrace_pid") == "5\n16\n812\n1042\n"


def test_v45_needs_a_task_with_the_pid_v48_does_not():
    # ftrace_pid_add(): find_get_pid() fails -> -EINVAL; trace_pid_write() never asks
    old, new = boot(OLD), boot(NEW)
    with pytest.raises(TracefsError) as info:
        old.tracefs.write("set_ftrace_pid", "4242")
    assert info.value.errno == errno.EINVAL
    assert old.tracefs.read("set_ftrace_pid") == "no pid\n"
    new.tracefs.write("set_ftrace_pid", "4242")
    assert new.tracefs.read("set_ftrace_pid") == "4242\n"


def test_v48_sched_switch_probe_follows_the_task_onto_a_cpu():
    # ftrace_filter_pid_sched_switch_probe(): the switch decides the CPU's ftrace_ignore_pid
    s = boot(NEW)
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("set_ftrace_pid", "1042")  # nobody runs it yet
    _run_as(s, 1, "bash", 1042)  # switched in on CPU 1 later
    _run_as(s, 0, "init", 1)
    assert _pids_in_trace(s) == {1042}
    probe = s.cpus[0].switch_probes[-1]
    s.tracefs.write("set_ftrace_pid", "")  # clear_ftrace_pids(): the probe goes
    assert not any(probe in cpu.switch_probes for cpu in s.cpus)


def test_v48_a_failed_write_keeps_the_old_list():
    # trace_pid_write(): "all or nothing"
    s = boot(NEW)
    s.tracefs.write("set_ftrace_pid", "7")
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("set_ftrace_pid", "8 nine", append=True)
    assert info.value.errno == errno.EINVAL
    assert s.tracefs.read("set_ftrace_pid") == "7\n"


@pytest.mark.parametrize("variant,text,err", [
    (OLD, "abc", errno.EINVAL),  # kstrtol() base 10
    (OLD, "0x10", errno.EINVAL),
    (OLD, "-3", errno.EINVAL),  # find_get_pid() of a negative pid
    (OLD, "99999999999999999999", errno.ERANGE),
    (OLD, "1" * 64, errno.EINVAL),  # cnt >= sizeof(buf)
    (NEW, "abc", errno.EINVAL),
    (NEW, "-3", errno.EINVAL),
    (NEW, "32768", errno.EINVAL),  # not below pid_max (PID_MAX_DEFAULT)
    (NEW, "x" * 200, errno.EINVAL),  # longer than PID_BUF_SIZE
])
def test_bad_pids_get_the_trees_errno(variant, text, err):
    s = boot(variant)
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("set_ftrace_pid", text)
    assert info.value.errno == err
    assert s.tracefs.read("set_ftrace_pid") == "no pid\n"


@pytest.mark.parametrize("variant", [OLD, NEW])
def test_function_graph_follows_the_pid_too(variant):
    # trace_graph_entry(): if (!ftrace_trace_task(...)) return 0
    s = boot(variant)
    s.cpus[0].set_task(Task("bash", 1042))
    s.tracefs.write("set_ftrace_pid", "1042")
    s.tracefs.write("current_tracer", "function_graph")
    _run_as(s, 0, "sshd", 812)
    graph = [line for line in s.tracefs.read("trace").splitlines() if not line.startswith("#")]
    assert graph == []
    _run_as(s, 0, "bash", 1042)
    assert any("workload_getpid" in line for line in s.tracefs.read("trace").splitlines())
