"""The function profiler: function_profile_enabled and trace_stat/functionN, as the
CONFIG_FUNCTION_PROFILER part of kernel/trace/ftrace.c (v4.5.0 = v4.8.17) and
kernel/trace/trace_stat.c do them with CONFIG_FUNCTION_GRAPH_TRACER."""

from __future__ import annotations

import errno
import re
from collections import Counter

import pytest

from ftrace_core.errors import TracefsError
from ftrace_core.kernels import VARIANTS
from ftrace_core.system import boot
from ftrace_core.tracers.profile import FUNCTION_STAT_HEADERS, FtraceProfile, trace_print_graph_duration

_ROW = re.compile(r"^  (.{30})  ([ \d]{10})    (\d+(?:\.\d+)? us +)    (\d+(?:\.\d+)? us +)    (\d+(?:\.\d+)? us +)$")


def _rows(text: str) -> list[tuple[str, int, float, float]]:
    """(function, hits, time us, avg us) of each row, checking each row's format."""
    assert text.startswith(FUNCTION_STAT_HEADERS)
    rows = []
    for line in text[len(FUNCTION_STAT_HEADERS):].splitlines():
        m = _ROW.match(line)
        assert m, line
        rows.append((m.group(1).strip(), int(m.group(2)), float(m.group(3).split()[0]), float(m.group(4).split()[0])))
    return rows


def _traced(s) -> Counter:
    """Calls per function in the function trace (every CPU)."""
    names = Counter()
    for line in s.tracefs.read("trace").splitlines():
        if not line.startswith("#") and ": " in line:
            names[line.rsplit(": ", 1)[1].split(" <-")[0]] += 1
    return names


def test_files_before_any_profiling_show_the_headers_only():
    """ftrace_profile_tracefs(): the stat files exist from boot; function_stat_start() has
    no pages yet, so only function_stat_headers() prints."""
    s = boot("fixed")
    assert s.tracefs.read("function_profile_enabled") == "0\n"
    for cpu in (0, 1):
        assert s.tracefs.read(f"trace_stat/function{cpu}") == FUNCTION_STAT_HEADERS
    assert s.tracefs.modes["trace_stat/function0"] == 0o644
    assert s.tracefs.modes["function_profile_enabled"] == 0o644


def test_hit_counts_equal_the_calls_in_a_function_trace_of_the_same_run():
    """function_profile_call() via profile_graph_entry(): one hit a call, beside the function
    tracer (graph_ops and global_ops both registered: the list func and the graph caller)."""
    s = boot("fixed")
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("function_profile_enabled", "1")
    s.tracefs.write("trace", "")
    s.call("workload_run", 2)
    hits = {name: n for name, n, _, _ in _rows(s.tracefs.read("trace_stat/function0"))}
    assert hits == dict(_traced(s))
    assert hits["workload_run"] == 1 and hits["do_syscall_64"] > 10


def test_rows_are_sorted_by_time_and_the_outermost_call_takes_longest():
    """function_stat_cmp() on time (the graph tracer's), the rbtree of stat_seq_init()
    listing the largest first; profile_graph_return() times push to pop."""
    s = boot("fixed")
    s.tracefs.write("function_profile_enabled", "1")
    before = s.cpus[0].clock_ns
    s.call("workload_run", 3)
    elapsed_us = (s.cpus[0].clock_ns - before) / 1000
    rows = _rows(s.tracefs.read("trace_stat/function0"))
    times = [t for _, _, t, _ in rows]
    assert times == sorted(times, reverse=True)
    assert rows[0][:2] == ("workload_run", 1)
    assert 0.9 * elapsed_us < rows[0][2] <= elapsed_us
    for name, hits, time, avg in rows:  # Avg is the time over the hits (to the ns shown)
        assert abs(avg * hits - time) <= 0.001 * hits + 0.001, name


def test_each_cpu_has_its_own_profile():
    """ftrace_profile_stats is per CPU: trace_stat/function1 counts CPU 1's calls only."""
    s = boot("fixed")
    s.tracefs.write("function_profile_enabled", "1")
    s.call("workload_getpid", cpu=1)
    assert s.tracefs.read("trace_stat/function0") == FUNCTION_STAT_HEADERS
    assert ("workload_getpid", 1) in [row[:2] for row in _rows(s.tracefs.read("trace_stat/function1"))]


def test_switching_off_keeps_the_counts_and_on_again_resets_them():
    """ftrace_profile_write(): off unregisters (the stats stay as they are); on again runs
    ftrace_profile_init(), which resets each CPU's profile (ftrace_profile_reset())."""
    s = boot("fixed")
    s.tracefs.write("function_profile_enabled", "5")  # !!val
    assert s.tracefs.read("function_profile_enabled") == "1\n"
    s.call("workload_getpid")
    s.tracefs.write("function_profile_enabled", "0")
    kept = s.tracefs.read("trace_stat/function0")
    s.call("workload_run", 1)
    assert s.tracefs.read("trace_stat/function0") == kept != FUNCTION_STAT_HEADERS
    assert s.tracefs.read("enabled_functions") == ""
    s.tracefs.write("function_profile_enabled", "1")
    assert s.tracefs.read("trace_stat/function0") == FUNCTION_STAT_HEADERS


def test_set_ftrace_filter_chooses_what_is_profiled():
    """graph_ops shares global_ops' hashes (ASSIGN_OPS_HASH): the filter applies to the
    profiler, also when it changes while profiling (ftrace_hash_rec_update_modify())."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "do_syscall_64")
    s.tracefs.write("function_profile_enabled", "1")
    s.call("workload_run", 1)
    assert [row[0] for row in _rows(s.tracefs.read("trace_stat/function0"))] == ["do_syscall_64"]
    s.tracefs.write("set_ftrace_filter", "*schedule")
    s.call("workload_run", 1)
    names = {row[0] for row in _rows(s.tracefs.read("trace_stat/function0"))}
    assert names == {"do_syscall_64", "schedule", "__schedule"}
    s.tracefs.write("function_profile_enabled", "0")
    assert s.tracefs.read("enabled_functions") == "" and not s.ftrace.ftrace_disabled


def test_profiler_with_function_tracing_and_a_filter_change():
    """The selftest func_profiler.tc's story (v4.5/v4.8 ftrace_hash_rec_update_modify()):
    with the function tracer and the profiler both on, a filter change and then the
    profiler switched off leave the function tracer tracing exactly the filter."""
    s = boot("fixed")
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("function_profile_enabled", "1")
    s.tracefs.write("set_ftrace_filter", "*schedule")
    s.tracefs.write("function_profile_enabled", "0")
    s.tracefs.write("trace", "")
    s.call("workload_run", 1)
    assert set(_traced(s)) == {"schedule", "__schedule"}
    s.tracefs.write("set_ftrace_filter", "")
    s.call("workload_run", 1)
    assert len(_traced(s)) > 10


def test_profiler_and_function_graph_refuse_each_other():
    """register_ftrace_graph(): one graph user at a time, -EBUSY for the second, whichever
    comes first; tracing_set_tracer() leaves nop current when graph_trace_init() fails."""
    s = boot("fixed")
    s.tracefs.write("current_tracer", "function_graph")
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("function_profile_enabled", "1")
    assert info.value.errno == errno.EBUSY
    assert s.tracefs.read("function_profile_enabled") == "0\n"
    s.tracefs.write("current_tracer", "nop")
    s.tracefs.write("function_profile_enabled", "1")
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("current_tracer", "function_graph")
    assert info.value.errno == errno.EBUSY
    assert s.tracefs.read("current_tracer") == "nop\n"


@pytest.mark.parametrize("text", ["x", "-1", "1 2", ""])
def test_bad_input_is_einval(text):
    """kstrtoul_from_user() in ftrace_profile_write()."""
    s = boot("fixed")
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("function_profile_enabled", text)
    assert info.value.errno == errno.EINVAL
    assert s.tracefs.read("function_profile_enabled") == "0\n"


def test_stat_files_are_read_only():
    """tracing_stat_fops has no .write: vfs_write() answers -EINVAL."""
    s = boot("fixed")
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("trace_stat/function0", "1")
    assert info.value.errno == errno.EINVAL


def test_graph_time_off_leaves_out_the_children():
    """profile_graph_return() with fgraph_graph_time off (options/graph-time 0): a parent's
    time is its own, without what ret_stack[].subtime gathered from its children."""
    def outer_time(graph_time: str) -> float:
        s = boot("fixed")
        if "options/graph-time" in s.tracefs.files:
            s.tracefs.write("options/graph-time", graph_time)
        elif graph_time == "0":
            pytest.skip("no options/graph-time in this tracefs")
        s.tracefs.write("function_profile_enabled", "1")
        s.call("workload_run", 1)
        return dict((r[0], r[2]) for r in _rows(s.tracefs.read("trace_stat/function0")))["workload_run"]

    assert outer_time("0") < outer_time("1") / 5


def test_time_formatting_follows_trace_print_graph_duration():
    """trace_print_graph_duration(): at most 7 digits, " us ", padded to 8 columns."""
    assert trace_print_graph_duration(0) == "0.000 us    "
    assert trace_print_graph_duration(76834) == "76.834 us   "
    assert trace_print_graph_duration(12345678) == "12345.67 us "
    assert trace_print_graph_duration(123456789) == "123456.7 us "
    assert trace_print_graph_duration(1234567890) == "1234567 us  "
    assert trace_print_graph_duration(12345678901) == "12345678 us "


def test_s2_is_the_sample_variance_with_do_div_32_bit_divisors():
    """function_stat_show(): s^2 = (n*Sum(x^2) - (Sum x)^2) / (n*(n-1)*1000), do_div()
    taking the divisor's low 32 bits (visible from 2073 hits on)."""
    s = boot("fixed")
    ip = s.symbol("schedule")
    rec = FtraceProfile(ip, counter=3, time=6000, time_squared=1000 ** 2 + 2000 ** 2 + 3000 ** 2)
    # times 1, 2, 3 us: variance 1 us^2 -> 1,000,000 ns^2 / 1000 = 1000 -> "1.000 us"
    assert s.profiler.function_stat_show(rec).endswith("    2.000 us        1.000 us    \n")
    n = 3000
    big = FtraceProfile(ip, counter=n, time=n * 1000, time_squared=n * 1000 ** 2 + 10 ** 12)
    divisor = (n * (n - 1) * 1000) & 0xFFFFFFFF
    expected = ((n * big.time_squared - big.time ** 2) & ((1 << 64) - 1)) // divisor
    assert s.profiler.function_stat_show(big).endswith("    " + trace_print_graph_duration(expected) + "\n")
    assert expected != ((n * big.time_squared - big.time ** 2) // (n * (n - 1) * 1000))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_tree_profiles_alike(variant):
    """The profiler is the same code in the 4.4.0+, v4.5.0 and v4.8.17 trees."""
    s = boot(variant)
    s.tracefs.write("function_profile_enabled", "1")
    s.call("workload_getpid")
    names = [row[0] for row in _rows(s.tracefs.read("trace_stat/function0"))]
    assert names[0] == "workload_getpid" and "get_current_pid" in names
