"""The ring buffer's other files (kernel/trace/trace.c, v4.5 and v4.8.17): snapshot
(tracing_snapshot_write(), update_max_tr(), print_snapshot_help()), per_cpu/cpuN/
(tracing_init_tracefs_percpu(), tracing_stats_read()), buffer_size_kb and
buffer_total_size_kb (tracing_entries_read(), tracing_total_entries_read()), free_buffer
(tracing_free_buffer_release()), saved_cmdlines (trace_save_cmdline()) and
dyn_ftrace_total_info (tracing_read_dyn_info()); and func_stack_trace
(function_stack_trace_call(), kernel/trace/trace_functions.c)."""

from __future__ import annotations

import errno

import pytest

from emu.cpu import Task
from ftrace_core.errors import TracefsError
from ftrace_core.system import boot


def _events(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _getpid_traced(variant: str = "fixed"):
    s = boot(variant)
    s.tracefs.write("set_ftrace_filter", "get_current_pid")
    s.tracefs.write("current_tracer", "function")
    return s


def test_an_empty_snapshot_shows_its_help_and_state():
    """print_snapshot_help(): freed until `echo 1`, allocated after; per-CPU help differs."""
    s = boot("fixed")
    text = s.tracefs.read("snapshot")
    assert text.startswith("# tracer: nop\n#\n#\n# * Snapshot is freed *\n#\n# Snapshot commands:\n")
    assert "# echo 1 > snapshot : Allocates snapshot buffer, if not already allocated.\n" in text
    s.tracefs.write("snapshot", "1")
    assert "# * Snapshot is allocated *" in s.tracefs.read("snapshot")
    assert "# echo 0 > snapshot : Invalid for per_cpu snapshot file.\n" in s.tracefs.read("per_cpu/cpu1/snapshot")


def test_echo_1_swaps_the_live_buffer_into_the_snapshot():
    """update_max_tr(): the snapshot holds what the trace held; the trace carries on in the
    old snapshot's buffer (empty the first time)."""
    s = _getpid_traced()
    s.call("workload_getpid", cpu=1)
    s.tracefs.write("snapshot", "1")
    assert not _events(s.tracefs.read("trace"))
    s.call("workload_getpid", cpu=0)
    snap, live = _events(s.tracefs.read("snapshot")), _events(s.tracefs.read("trace"))
    assert len(snap) == 1 and "[001]" in snap[0] and len(live) == 1 and "[000]" in live[0]
    s.tracefs.write("snapshot", "1")  # swap back: the first event is live again
    assert "[001]" in _events(s.tracefs.read("trace"))[0]
    s.tracefs.write("snapshot", "2")  # any other number clears the snapshot
    assert not _events(s.tracefs.read("snapshot"))
    s.tracefs.write("snapshot", "0")  # frees
    assert "# * Snapshot is freed *" in s.tracefs.read("snapshot")


def test_snapshot_write_errors():
    s = boot("fixed")
    for name, text in (("snapshot", "x"), ("per_cpu/cpu0/snapshot", "0"), ("per_cpu/cpu0/snapshot", "1")):
        with pytest.raises(TracefsError) as info:
            s.tracefs.write(name, text)
        assert info.value.errno == errno.EINVAL, (name, text)


def test_the_snapshot_probe_command_takes_a_snapshot_when_hit():
    """ftrace_trace_snapshot_callback(): registering allocates; ftrace_snapshot() swaps."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "get_current_pid")
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("set_ftrace_filter", "__x64_sys_getpid:snapshot:2", append=True)
    assert "# * Snapshot is allocated *" in s.tracefs.read("snapshot")
    s.call("workload_getpid")  # the hit swaps an empty buffer; then get_current_pid's event
    s.call("workload_getpid")  # the hit swaps that event into the snapshot
    s.call("workload_getpid")  # the count is spent: no swap
    assert len(_events(s.tracefs.read("snapshot"))) == 1
    assert len(_events(s.tracefs.read("trace"))) == 2
    assert s.tracefs.read("set_ftrace_filter").splitlines()[-1] == "__x64_sys_getpid:snapshot:count=0"


def test_per_cpu_trace_pipe_and_stats_see_one_cpu():
    """tracing_open() / tracing_open_pipe() with a cpu_file; tracing_stats_read()."""
    s = _getpid_traced()
    s.call("workload_getpid", cpu=0)
    s.call("workload_getpid", cpu=1)
    s.call("workload_getpid", cpu=1)
    assert len(_events(s.tracefs.read("per_cpu/cpu1/trace"))) == 2
    assert "entries-in-buffer/entries-written: 3/3" in s.tracefs.read("per_cpu/cpu1/trace")
    stats = s.tracefs.read("per_cpu/cpu1/stats").splitlines()
    assert stats[:4] == ["entries: 2", "overrun: 0", "commit overrun: 0", "bytes: 64"]
    assert stats[-2:] == ["dropped events: 0", "read events: 0"]
    assert len(_events(s.tracefs.read("per_cpu/cpu1/trace_pipe"))) == 2
    assert s.tracefs.read("per_cpu/cpu1/stats").splitlines()[-1] == "read events: 2"
    assert len(_events(s.tracefs.read("trace"))) == 1  # CPU 0's is still there
    s.tracefs.write("per_cpu/cpu0/trace", "")  # O_TRUNC: tracing_reset() of that CPU
    assert not _events(s.tracefs.read("trace"))


def test_sizes_per_cpu_and_in_total():
    """tracing_entries_read(): X when the CPUs differ; buffer_total_size_kb adds them."""
    s = boot("fixed")
    assert s.tracefs.read("buffer_size_kb") == "1408\n"
    assert s.tracefs.read("buffer_total_size_kb") == "2816\n"
    s.tracefs.write("per_cpu/cpu1/buffer_size_kb", "4")
    assert s.tracefs.read("buffer_size_kb") == "X\n"
    assert s.tracefs.read("per_cpu/cpu1/buffer_size_kb") == "4\n"
    assert s.tracefs.read("buffer_total_size_kb") == "1412\n"
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("per_cpu/cpu0/buffer_size_kb", "0")
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize("stop_on_free", [False, True])
def test_closing_free_buffer_shrinks_the_buffer(stop_on_free):
    """tracing_free_buffer_release(): the buffer to its least; tracing off first with the
    disable_on_free option."""
    s = boot("fixed")
    s.tracefs.write("options/disable_on_free", "1" if stop_on_free else "0")
    s.tracefs.write("free_buffer", "anything")
    assert s.tracefs.read("buffer_size_kb") == "0\n"
    assert s.tracefs.read("tracing_on") == ("0\n" if stop_on_free else "1\n")


def test_saved_cmdlines_keeps_tasks_switched_out_after_an_event():
    """tracing_record_cmdline() from the sched_switch probe: the task leaving a CPU that
    recorded an event since the last save is saved; the size is settable, 1 to 32768."""
    s = _getpid_traced()
    s.cpus[0].set_task(Task("bash", 1042))
    s.call("workload_getpid")
    s.cpus[0].set_task(Task("sh", 1043))  # bash leaves after an event: saved
    s.cpus[0].set_task(Task("cat", 1044))  # sh recorded nothing: not saved
    assert s.tracefs.read("saved_cmdlines") == "1042 bash\n"
    s.tracefs.write("saved_cmdlines_size", "16")
    assert s.tracefs.read("saved_cmdlines_size") == "16\n" and s.tracefs.read("saved_cmdlines") == ""
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("saved_cmdlines_size", "40000")
    assert info.value.errno == errno.EINVAL


def test_dyn_ftrace_total_info_counts_the_records_converted():
    """tracing_read_dyn_info(): ftrace_update_tot_cnt, and a space (x86 adds nothing)."""
    s = boot("fixed")
    total = len(s.ftrace.records)
    assert s.tracefs.read("dyn_ftrace_total_info") == f"{total} \n"


def test_func_stack_trace_adds_the_callers_after_each_function_event():
    """function_stack_trace_call(): the function event, then `<stack trace>` with one
    ` => caller` line each."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "get_current_pid")
    s.tracefs.write("options/func_stack_trace", "1")
    s.tracefs.write("current_tracer", "function")
    s.call("workload_getpid")
    text = s.tracefs.read("trace")
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith(": <stack trace>"))
    assert lines[at - 1].endswith("get_current_pid <-__x64_sys_getpid")
    assert " => __x64_sys_getpid" in lines[at + 1:at + 4] or " => get_current_pid" in lines[at + 1:at + 4]
    s.tracefs.write("options/func_stack_trace", "0")  # func_set_flag(): re-registered plain
    s.tracefs.write("trace", "")
    s.call("workload_getpid")
    assert "<stack trace>" not in s.tracefs.read("trace")
