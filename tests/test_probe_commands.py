"""The probe commands of set_ftrace_filter (traceon, traceoff, stacktrace, dump, cpudump), as
v4.5.0 and v4.8.17 have them: kernel/trace/ftrace.c ftrace_process_regex(),
register_ftrace_function_probe(), __unregister_ftrace_function_probe(), t_hash_show(),
function_trace_probe_call(); kernel/trace/trace_functions.c the commands and their probes;
kernel/trace/trace.c ftrace_dump() and trace_dump_stack()."""

from __future__ import annotations

import errno

import pytest

from ftrace_core.errors import TracefsError
from ftrace_core.probe import FTRACE_HASH_BITS, hash_long
from ftrace_core.system import boot

OLD, NEW = "fixed", "v4.8.17"
ALL = "#### all functions enabled ####\n"


def _filter(s) -> str:
    return s.tracefs.read("set_ftrace_filter")


@pytest.mark.parametrize("variant", [OLD, NEW])
def test_probes_list_after_the_functions_as_their_print_says(variant):
    # ftrace_probe_print(): "%ps:%s" then ":unlimited" or ":count=%ld"; t_hash_show() after t_show()
    s = boot(variant)
    s.tracefs.write("set_ftrace_filter", "vfs_write:traceoff:3")
    assert _filter(s) == ALL + "vfs_write:traceoff:count=3\n"
    s.tracefs.write("set_ftrace_filter", "vfs_read", append=True)
    assert _filter(s) == "vfs_read\nvfs_write:traceoff:count=3\n"
    # O_TRUNC empties the filter but keeps the probes (func_set_ftrace_file.tc)
    s.tracefs.write("set_ftrace_filter", "")
    assert _filter(s) == ALL + "vfs_write:traceoff:count=3\n"


def test_count_parsing_follows_ftrace_trace_probe_callback():
    # no ":count" -> plain ops; ":" with nothing after -> counted ops, unlimited; kstrtoul base 0
    s = boot(OLD)
    s.tracefs.write("set_ftrace_filter", "vfs_read:traceon")
    s.tracefs.write("set_ftrace_filter", "vfs_write:stacktrace:", append=True)
    s.tracefs.write("set_ftrace_filter", "vfs_open:traceoff:0x10", append=True)
    lines = set(_filter(s).splitlines()[1:])
    assert lines == {"vfs_read:traceon:unlimited", "vfs_write:stacktrace:unlimited", "vfs_open:traceoff:count=16"}


def test_dump_and_cpudump_always_count_one():
    # ftrace_dump_callback()/ftrace_cpudump_callback(): "Only dump once"
    s = boot(OLD)
    s.tracefs.write("set_ftrace_filter", "vfs_write:dump:7")
    s.tracefs.write("set_ftrace_filter", "vfs_read:cpudump", append=True)
    assert set(_filter(s).splitlines()[1:]) == {"vfs_write:dump:count=1", "vfs_read:cpudump:count=1"}


@pytest.mark.parametrize("variant", [OLD, NEW])
def test_traceoff_stops_the_ring_buffer_when_the_function_is_hit(variant):
    # ftrace_traceoff(): tracing_off() when hit; func_traceonoff_triggers.tc
    s = boot(variant)
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("set_ftrace_filter", "vfs_write:traceoff")
    s.call("workload_getpid")
    assert s.tracefs.read("tracing_on") == "1\n"
    s.call("workload_fs_roundtrip", 1)
    assert s.tracefs.read("tracing_on") == "0\n"
    trace = s.tracefs.read("trace")
    assert "ksys_write" in trace and "ramfs_file_write" not in trace  # nothing after vfs_write
    # '!' removes the probe and leaves tracing off
    s.tracefs.write("set_ftrace_filter", "!vfs_write:traceoff", append=True)
    assert _filter(s) == ALL
    assert s.tracefs.read("tracing_on") == "0\n"


def test_traceoff_count_fires_only_count_times():
    # update_traceon_count(): counts down only when it changes the state
    s = boot(OLD)
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("set_ftrace_filter", "vfs_write:traceoff:2")
    for expected in ("count=1", "count=0", "count=0"):
        s.tracefs.write("tracing_on", "1")
        s.call("workload_fs_roundtrip", 1)
        assert _filter(s).splitlines()[1] == f"vfs_write:traceoff:{expected}"
    assert s.tracefs.read("tracing_on") == "1\n"  # the third hit did nothing


def test_traceon_switches_tracing_back_on():
    # ftrace_traceon()
    s = boot(NEW)
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("tracing_on", "0")
    s.tracefs.write("set_ftrace_filter", "vfs_read:traceon")
    s.call("workload_fs_roundtrip", 1)
    assert s.tracefs.read("tracing_on") == "1\n"
    assert "ramfs_file_read" in s.tracefs.read("trace")


@pytest.mark.parametrize("variant", [OLD, NEW])
def test_stacktrace_records_the_callers(variant):
    # ftrace_stacktrace() -> trace_dump_stack(); trace_stack_print(): "<stack trace>", " => func"
    s = boot(variant)
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("set_ftrace_filter", "vfs_read:stacktrace")
    s.call("workload_fs_roundtrip", 1)
    trace = s.tracefs.read("trace")
    head, _, rest = trace.partition(": <stack trace>\n")
    assert rest.startswith(" => vfs_read\n => ksys_read\n => workload_fs_roundtrip\n")
    assert head.splitlines()[-1].lstrip().startswith("<idle>-0")


def test_stacktrace_count_needs_tracing_on():
    # ftrace_stacktrace_count(): nothing while tracing is off, and no count used up
    s = boot(OLD)
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("set_ftrace_filter", "vfs_read:stacktrace:1")
    s.tracefs.write("tracing_on", "0")
    s.call("workload_fs_roundtrip", 1)
    assert _filter(s).splitlines()[1] == "vfs_read:stacktrace:count=1"
    s.tracefs.write("tracing_on", "1")
    s.call("workload_fs_roundtrip", 2)
    assert s.tracefs.read("trace").count("<stack trace>") == 1
    assert _filter(s).splitlines()[1] == "vfs_read:stacktrace:count=0"


def test_dump_prints_the_buffer_into_dmesg_and_turns_tracing_off():
    # ftrace_dump(DUMP_ALL): tracing_off(), each event consumed and printed in latency format
    s = boot(NEW)
    s.tracefs.write("current_tracer", "function")
    s.tracefs.write("set_ftrace_filter", "vfs_write:dump")
    s.call("workload_fs_roundtrip", 1)
    lines = [line.split("] ", 1)[1] for line in s.dmesg().splitlines()]
    lines = lines[lines.index("Dumping ftrace buffer:"):]
    assert lines[1] == "---------------------------------"
    assert lines[-1] == "---------------------------------"
    assert any(line.startswith("  <idle>-0       0....") and line.endswith(": ksys_write <-workload_fs_roundtrip")
               for line in lines)
    assert s.tracefs.read("tracing_on") == "0\n"
    assert "vfs_write:dump:count=0" in _filter(s)
    assert [line for line in s.tracefs.read("trace").splitlines() if not line.startswith("#")] == []


def test_cpudump_of_an_empty_buffer_says_so():
    # ftrace_dump(DUMP_ORIG) of this CPU's buffer only: "   (ftrace buffer empty)"
    s = boot(OLD)
    s.tracefs.write("set_ftrace_filter", "vfs_write:cpudump")  # no tracer: nothing recorded
    s.call("workload_fs_roundtrip", 1, cpu=1)
    assert "Dumping ftrace buffer:\n" in s.dmesg()
    assert s.dmesg().rstrip().endswith("(ftrace buffer empty)")


def test_unregister_removes_only_that_commands_kind():
    # unregister_ftrace_function_probe_func(glob, ops): a count is a different ops
    s = boot(OLD)
    s.tracefs.write("set_ftrace_filter", "vfs_write:traceoff")
    s.tracefs.write("set_ftrace_filter", "vfs_write:traceoff:3", append=True)
    s.tracefs.write("set_ftrace_filter", "!vfs_write:traceoff:0", append=True)
    assert _filter(s) == ALL + "vfs_write:traceoff:unlimited\n"
    s.tracefs.write("set_ftrace_filter", "!vfs_write:traceoff", append=True)
    assert _filter(s) == ALL
    assert s.probes.registered is False  # __disable_ftrace_function_probe(): the last one gone


def test_unregister_with_an_end_glob_matches_nothing_as_in_the_trees():
    # __unregister_ftrace_function_probe() resets func_g.search to the glob as written, so
    # "*_write" is compared as "*_wri": nothing is removed (v4.5.0 and v4.8.17 alike)
    s = boot(NEW)
    s.tracefs.write("set_ftrace_filter", "vfs_write:traceoff")
    s.tracefs.write("set_ftrace_filter", "!*_write:traceoff", append=True)
    assert "vfs_write:traceoff:unlimited" in _filter(s)
    s.tracefs.write("set_ftrace_filter", "!vfs_w*:traceoff", append=True)  # a front glob works
    assert _filter(s) == ALL


def test_probe_order_follows_each_trees_hash_long():
    # t_hash_next(): bucket by bucket; hash_64() multiplier changed in v4.6 (GOLDEN_RATIO_64)
    for variant, golden in ((OLD, False), (NEW, True)):
        s = boot(variant)
        for func in ("vfs_read", "vfs_write", "vfs_open", "do_sys_open", "ksys_read", "ksys_write"):
            s.tracefs.write("set_ftrace_filter", f"{func}:traceon", append=True)
        listed = [line.split(":")[0] for line in _filter(s).splitlines()[1:]]
        order = sorted(listed, key=lambda f: hash_long(s.symbol(f), FTRACE_HASH_BITS, golden))
        assert listed == order
    assert hash_long(0xFFFFFFFF81001230, 7, False) != hash_long(0xFFFFFFFF81001230, 7, True)


def test_probes_register_trace_probe_ops_on_their_functions_only():
    # __enable_ftrace_function_probe(): ftrace_startup(&trace_probe_ops) with a filter hash
    s = boot(OLD)
    s.tracefs.write("set_ftrace_filter", "vfs_write:traceoff")
    enabled = s.tracefs.read("enabled_functions")
    assert enabled == "vfs_write (1)     ->function_trace_probe_call+0x0/0x1\n"


@pytest.mark.parametrize("text,err", [
    ("vfs_write:nosuchcmd", errno.EINVAL),  # ftrace_process_regex(): no such command
    ("vfs_write:traceoff:abc", errno.EINVAL),  # kstrtoul()
    ("vfs_write:traceoff:99999999999999999999", errno.ERANGE),
])
def test_bad_commands_get_the_trees_errno(text, err):
    s = boot(OLD)
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("set_ftrace_filter", text)
    assert info.value.errno == err
    assert _filter(s) == ALL


def test_commands_are_refused_in_set_ftrace_notrace():
    # ftrace_trace_probe_callback(): "hash funcs only work with set_ftrace_filter"
    s = boot(NEW)
    with pytest.raises(TracefsError) as info:
        s.tracefs.write("set_ftrace_notrace", "vfs_write:traceoff")
    assert info.value.errno == errno.EINVAL


def test_a_glob_matching_nothing_is_no_error():
    # register_ftrace_function_probe() returns 0 probes; the callback returns 0
    s = boot(OLD)
    s.tracefs.write("set_ftrace_filter", "no_such_function:traceoff")
    assert _filter(s) == ALL


def test_removing_one_probe_of_several_leaves_its_site_until_the_next_update():
    # __unregister_ftrace_function_probe(): ftrace_hash_move() moves the references but no
    # site is rewritten while trace_probe_ops stays registered (v4.5.0 and v4.8.17)
    s = boot(OLD)
    s.tracefs.write("set_ftrace_filter", "vfs_write:traceoff")
    s.tracefs.write("set_ftrace_filter", "vfs_read:traceoff", append=True)
    s.tracefs.write("set_ftrace_filter", "!vfs_read:traceoff", append=True)
    assert s.tracefs.read("enabled_functions").splitlines()[0] == "vfs_read (0)     ->function_trace_probe_call+0x0/0x1"
    s.call("workload_fs_roundtrip", 1, cpu=1)  # vfs_read's stale site finds no probe; vfs_write's fires
    assert s.tracefs.read("tracing_on") == "0\n"
    s.tracefs.write("set_ftrace_filter", "vfs_open:traceon", append=True)  # the next update
    assert "vfs_read" not in s.tracefs.read("enabled_functions")
