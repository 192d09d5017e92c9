"""The kernel.ftrace_enabled sysctl: kernel/trace/ftrace.c ftrace_enable_sysctl(),
ftrace_startup_sysctl() and ftrace_shutdown_sysctl() (the same code in v4.5.0 and v4.8.17),
kernel/sysctl.c's entry, and what the explorer finds when it races a module load."""

from __future__ import annotations

import errno

import guest
import pytest

from ftrace_core.explore import explore_variant, map_forked
from ftrace_core.flags import FTRACE_FL_ENABLED, ftrace_rec_count
from ftrace_core.kernels import VARIANTS
from ftrace_core.scenario import ScenarioError, parse_scenario, run_scenario
from ftrace_core.shell import Shell
from ftrace_core.sysctl import SysctlError
from ftrace_core.system import boot

NAME = "kernel.ftrace_enabled"


def _traced(s) -> list[str]:
    return [line.split()[-2] for line in s.tracefs.read("trace").splitlines() if not line.startswith("#")]


def _enabled(s) -> int:
    return sum(1 for rec in s.ftrace.records if rec.flags & FTRACE_FL_ENABLED)


def test_the_entry_reads_one_after_boot_with_mode_0644():
    """kernel/sysctl.c: procname "ftrace_enabled", mode 0644; ftrace_init() sets
    last_ftrace_enabled = ftrace_enabled = 1."""
    s = boot("fixed")
    assert s.sysctl(NAME) == "1\n"
    assert s.sysctl("kernel/ftrace_enabled") == "1\n"
    assert s.sysctls.entry(NAME).mode == 0o644


@pytest.mark.parametrize("variant", ["seed", "v4.8.17"])
def test_off_nops_every_site_but_keeps_the_counts_and_on_restores_them(variant):
    """ftrace_shutdown_sysctl(): FTRACE_DISABLE_CALLS turns every enabled site into the nop,
    records keep their counts and the ops stay registered; ftrace_startup_sysctl():
    FTRACE_UPDATE_CALLS makes them calls again."""
    s = boot(variant)
    s.tracefs.write("current_tracer", "function")
    before = {rec.ip: rec.flags for rec in s.ftrace.records}
    assert _enabled(s) == len(before)
    s.set_sysctl(NAME, 0)
    assert s.sysctl(NAME) == "0\n"
    assert _enabled(s) == 0 and s.tracefs.read("enabled_functions") == ""
    assert all(ftrace_rec_count(rec.flags) == 1 for rec in s.ftrace.records)
    assert s.global_ops in s.ftrace.ops_list and s.tracefs.read("current_tracer") == "function\n"
    # ftrace_trace_function = ftrace_stub
    assert s.ftrace.ftrace_trace_function == s.symbol("ftrace_stub")
    s.call("workload_getpid")
    assert _traced(s) == []
    s.set_sysctl(NAME, 1)
    assert {rec.ip: rec.flags for rec in s.ftrace.records} == before
    s.call("workload_getpid")
    assert "get_current_pid" in _traced(s)


def test_a_tracer_started_while_off_patches_nothing_until_on():
    """__register_ftrace_function() updates the trace function only `if (ftrace_enabled)`,
    and ftrace_startup_enable() returns early `if (!command || !ftrace_enabled)`; turning it
    back on forgets saved_ftrace_func ("Force update next time") and updates every site."""
    s = boot("fixed")
    s.set_sysctl(NAME, 0)
    s.tracefs.write("set_ftrace_filter", "get_current_pid")
    s.tracefs.write("current_tracer", "function")
    assert _enabled(s) == 0
    assert s.ftrace.ftrace_trace_function == s.symbol("ftrace_stub")
    s.call("workload_getpid")
    assert _traced(s) == []
    s.set_sysctl(NAME, 1)
    assert s.tracefs.read("enabled_functions").startswith("get_current_pid (1)")
    s.call("workload_getpid")
    assert _traced(s) == ["get_current_pid"]


def test_only_a_change_of_truth_acts_and_any_int_is_stored():
    """ftrace_enable_sysctl(): proc_dointvec() stores the int; `last_ftrace_enabled ==
    !!ftrace_enabled` returns before any update."""
    s = boot("fixed")
    s.tracefs.write("current_tracer", "function")
    gen = s.ftrace.generation
    s.set_sysctl(NAME, 5)
    assert s.sysctl(NAME) == "5\n"
    assert s.ftrace.generation == gen and _enabled(s) == len(s.ftrace.records)
    s.set_sysctl(NAME, 0)
    s.set_sysctl(NAME, "0")
    assert _enabled(s) == 0


@pytest.mark.parametrize("text", ["", "x\n", "1x\n", "99999999999\n"])
def test_bad_values_are_einval_and_change_nothing(text):
    """proc_dointvec(): -EINVAL, nothing stored, no update."""
    s = boot("fixed")
    s.tracefs.write("current_tracer", "function")
    with pytest.raises(SysctlError) as err:
        s.sysctls.write(NAME, text)
    assert err.value.errno == errno.EINVAL
    assert s.sysctl(NAME) == "1\n" and _enabled(s) == len(s.ftrace.records)


def test_once_ftrace_is_dead_reads_and_writes_are_enodev():
    """ftrace_enable_sysctl(): `ret = -ENODEV; ... if (unlikely(ftrace_disabled)) goto out`
    before proc_dointvec(), for a read as for a write; ftrace_kill() left ftrace_enabled 0."""
    s = boot("fixed")
    s.ftrace.ftrace_kill()
    for attempt in (lambda: s.sysctl(NAME), lambda: s.set_sysctl(NAME, 1)):
        with pytest.raises(SysctlError) as err:
            attempt()
        assert err.value.errno == errno.ENODEV
    assert s.ftrace.ftrace_enabled == 0


def test_function_graph_stops_and_starts_with_the_graph_caller():
    """ftrace_shutdown_sysctl()/ftrace_startup_sysctl() add FTRACE_STOP_FUNC_RET /
    FTRACE_START_FUNC_RET while ftrace_graph_active."""
    s = boot("fixed")
    s.tracefs.write("set_ftrace_filter", "get_current_pid")
    s.tracefs.write("current_tracer", "function_graph")
    s.set_sysctl(NAME, 0)
    s.call("workload_getpid")
    assert "get_current_pid" not in s.tracefs.read("trace")
    s.set_sysctl(NAME, 1)
    s.call("workload_getpid")
    assert "get_current_pid();" in s.tracefs.read("trace")


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_module_loaded_while_off_is_traced_anyway(variant):
    """Neither ftrace_module_enable() (seed on) nor ftrace_update_code() (legacy) asks
    ftrace_enabled: with a tracer registered, a module loaded while ftrace_enabled is 0 gets
    its sites made calls, and ftrace_shutdown_sysctl() left ftrace_call pointing at the
    tracer (no FTRACE_UPDATE_TRACE_FUNC), so its functions are traced while the kernel's are
    not.  The same in every tree here."""
    s = boot(variant, cmdline="ftrace=function")
    s.set_sysctl(NAME, 0)
    s.insmod(guest.module_path("hello"))
    s.tracefs.write("trace", "")
    s.call("hello_answer")
    s.call("workload_getpid")
    assert _traced(s) == ["hello_answer"]
    assert [line.split()[0] for line in s.tracefs.read("enabled_functions").splitlines()] == [
        "hello_answer", "init_module", "cleanup_module"]
    assert not s.ftrace.ftrace_disabled


def test_scenario_and_shell_syntax():
    """`echo N > /proc/sys/kernel/NAME` and `cat /proc/sys/kernel/NAME` in scenarios and the
    shell; a path that is no sysctl's is refused with the line."""
    scn = parse_scenario("cpu 0: echo 0 > /proc/sys/kernel/ftrace_enabled\n"
                         "cpu 0: cat /proc/sys/kernel/ftrace_enabled\n", "s.scn")
    assert [(c.kind, c.args) for c in scn.commands[0]] == [
        ("sysctl", ("kernel.ftrace_enabled", "0\n")), ("sysctl", ("kernel.ftrace_enabled", None))]
    with pytest.raises(ScenarioError, match=r"s.scn:1: .*not a sysctl path"):
        parse_scenario("cpu 0: echo 0 > /proc/sys/\n", "s.scn")
    r = run_scenario(parse_scenario("cpu 0: echo 1 > /proc/sys/kernel/no_such\n", "s.scn"), "fixed")
    assert "no such sysctl" in r.commands[0].error
    import io

    out = io.StringIO()
    shell = Shell(boot("fixed"), out=out)
    for line in ("echo 0 > /proc/sys/kernel/ftrace_enabled", "cat /proc/sys/kernel/ftrace_enabled",
                 "echo x > /proc/sys/kernel/ftrace_enabled"):
        shell.execute(line)
    assert out.getvalue().splitlines() == [
        "0", "echo: write error: Invalid argument (kernel.ftrace_enabled: b'x\\n' is not a number)"]


# ftrace_enabled 0 on CPU 0 while CPU 1 loads hello.ko, the function tracer started at boot.
OFF_WHILE_LOADING = parse_scenario("""
cmdline: ftrace=function
cpu 0: echo 0 > /proc/sys/kernel/ftrace_enabled
cpu 1: insmod hello.ko
""", "off-while-loading.scn")


@pytest.fixture(scope="module")
def explored():
    return dict(zip(("seed", "fixed"), map_forked(lambda v: explore_variant(OFF_WHILE_LOADING, v),
                                                  ["seed", "fixed"], 2)))


def test_switching_off_while_a_module_loads_races_on_seed_not_on_fixed(explored):
    """The module-load race again, through ftrace_shutdown_sysctl(): on the seed,
    ftrace_module_enable() runs from ftrace_module_init() and makes hello's sites calls while
    its text is writable; ftrace_enable_sysctl() (holding ftrace_lock) made the text RW
    skipping the still-UNFORMED module, complete_formation() sets it RO, and the
    FTRACE_DISABLE_CALLS pass faults turning those calls into nops.  On fixed the records
    are still DISABLED when the pass runs (ftrace_check_record() skips them) and
    ftrace_module_enable() runs after the text is RO, under ftrace_lock: no schedule fails."""
    seed, fixed = explored["seed"], explored["fixed"]
    assert seed.complete and fixed.complete
    assert seed.failing_schedules and all("ftrace faulted on writing" in kind for kind in seed.kinds)
    assert fixed.failing_schedules == [] and fixed.schedules > 1
    r = run_scenario(OFF_WHILE_LOADING, "seed", seed.shortest_failing)
    assert r.ftrace_disabled and "Setting ftrace call site to NOP" in r.bug
    assert r.faulting_ip.endswith("[hello]")
    again = run_scenario(OFF_WHILE_LOADING, "fixed", seed.shortest_failing)
    assert all(again.invariants.values()), again.violations
