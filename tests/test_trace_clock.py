"""trace_clock (kernel/trace/trace.c trace_clocks[], tracing_clock_show(), tracing_set_clock(),
v4.5 and v4.8.17; kernel/trace/trace_clock.c) over the emulated clocks."""

from __future__ import annotations

import errno

import pytest

from ftrace_core.errors import TracefsError
from ftrace_core.system import boot


def _events(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_clocks_are_listed_with_the_current_one_in_brackets():
    """tracing_clock_show(), with x86's ARCH_TRACE_CLOCKS."""
    s = boot("fixed")
    assert s.tracefs.read("trace_clock") == "[local] global counter uptime perf mono mono_raw x86-tsc\n"
    s.tracefs.write("trace_clock", "global")
    assert s.tracefs.read("trace_clock") == "local [global] counter uptime perf mono mono_raw x86-tsc\n"


def test_an_unknown_clock_is_einval_and_changes_nothing():
    s = boot("fixed")
    for text in ("jiffies", "x" * 70):
        with pytest.raises(TracefsError) as info:
            s.tracefs.write("trace_clock", text)
        assert info.value.errno == errno.EINVAL
    assert s.tracefs.read("trace_clock").startswith("[local]")


def test_a_new_clock_empties_the_buffer():
    """tracing_set_clock(): tracing_reset_online_cpus(), as the times would not compare."""
    s = boot("fixed")
    s.tracefs.write("current_tracer", "function")
    s.call("workload_getpid")
    assert s.buffer.entries()
    s.tracefs.write("trace_clock", "perf")
    assert not s.buffer.entries()


def test_counter_stamps_events_in_order_and_prints_them_raw():
    """trace_clock_counter(): one more for each stamp, shared by the CPUs; not in ns, so
    trace_print_context() prints it as ` %12llu: `."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "get_current_pid")
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("trace_clock", "counter")  # its reset takes stamp 1 (buffer_ftrace_now())
    s.call("workload_getpid", cpu=0)
    s.call("workload_getpid", cpu=1)
    s.call("workload_getpid", cpu=0)
    assert [e.ts for e in s.buffer.entries()] == [2, 3, 4]
    assert _events(s.tracefs.read("trace"))[1] == \
        "          <idle>-0     [001] ....            3: get_current_pid <-__x64_sys_getpid"


def test_global_never_goes_back_across_cpus_and_local_can():
    """trace_clock_global(): a CPU behind the last stamp given gets one more than it; the
    local clock is each CPU's own, and CPU 1 has run far less than CPU 0 here."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "get_current_pid")
    s.tracefs.write("current_tracer", "function")
    s.call("workload_run", 3, cpu=0)
    s.tracefs.write("trace", "")
    s.call("workload_getpid", cpu=0)
    s.call("workload_getpid", cpu=1)
    local = [(e.cpu, e.ts) for e in s.buffer.entries()]
    assert local[0][0] == 1 and local[0][1] < local[1][1]  # CPU 1's clock is behind
    s.tracefs.write("trace_clock", "global")
    s.call("workload_getpid", cpu=0)
    s.call("workload_getpid", cpu=1)
    first, second = s.buffer.entries()
    assert (first.cpu, second.cpu) == (0, 1) and second.ts == first.ts + 1


def test_uptime_counts_the_guests_jiffies_in_user_hz():
    """trace_clock_jiffies(): jiffies_64_to_clock_t(jiffies_64 - INITIAL_JIFFIES), with the
    guest's HZ of 250 and USER_HZ 100."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "get_current_pid")
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("trace_clock", "uptime")
    s.call("workload_getpid")
    jiffies = int.from_bytes(s.read(s.symbol("jiffies"), 8), "little")
    since_boot = (jiffies - ((-300 * 250) & 0xFFFFFFFF)) & ((1 << 64) - 1)
    assert [e.ts for e in s.buffer.entries()] == [since_boot * 4_000_000 // 10_000_000]


def test_x86_tsc_is_the_cycle_count_and_graph_durations_ignore_the_clock():
    """x86-tsc: rdtsc, one cycle a nanosecond here, printed raw.  The graph's durations
    come from trace_clock_local() whatever the clock (ftrace_push_return_trace())."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "__x64_sys_getpid\nget_current_pid")
    s.tracefs.write("current_tracer", "function_graph")
    s.call("workload_getpid")
    durations = [e.duration for e in s.buffer.entries() if e.exit]
    s.tracefs.write("trace_clock", "counter")
    s.call("workload_getpid")
    assert [e.duration for e in s.buffer.entries() if e.exit] == durations
    s.tracefs.write("trace_clock", "x86-tsc")
    s.tracefs.write("current_tracer", "function")
    s.call("workload_getpid")
    cycles = s.buffer.entries()[-1].ts
    assert f" {cycles:12d}: get_current_pid" in s.tracefs.read("trace")


def test_the_guest_recorder_takes_only_per_cpu_clocks():
    """The in-guest recorder stamps each event with its CPU's clock: global needs the hook."""
    s = boot("fixed", recorder="guest")
    s.tracefs.write("trace_clock", "x86-tsc")
    with pytest.raises(TracefsError, match="hook recorder") as info:
        s.tracefs.write("trace_clock", "global")
    assert info.value.errno == errno.EINVAL
