"""The module-load race of the seed commit, on two emulated CPUs: the verdicts per variant,
replay, and invariants that catch a wrong fix."""

from __future__ import annotations

import json

import pytest

from ftrace_core.cli import main
from ftrace_core.scenario import ScenarioError, load_scenario, parse_scenario, run_scenario
from ftrace_core.system import boot

RACE = load_scenario("race")
CANONICAL = "1@ftrace_module_init 0@ftrace_arch_code_modify_prepare 1@complete_formation 0 1"
LOADED_FIRST = "1@module_live 0 1"  # CPU 1 finishes loading before CPU 0 starts tracing


@pytest.fixture(scope="module")
def canonical():
    return {v: run_scenario(RACE, v) for v in ("legacy", "seed", "fixed")}


@pytest.mark.parametrize("variant", ["legacy", "seed"])
def test_old_kernels_fault_on_read_only_module_text(canonical, variant):
    r = canonical[variant]
    assert r.ftrace_disabled
    assert r.faulting_ip.endswith(" [race_mod]") and r.faulting_ip.startswith("race_mod_")
    lines = r.bug.splitlines()
    # x86 in 4.8 rewrites live sites with breakpoints: the int3 pass is the write that faults
    assert lines[0] == "Failed on adding breakpoints (164):"
    assert lines[1].startswith("ftrace faulted on writing [<ffffffffa")
    assert lines[2] == "Setting ftrace call site to call ftrace function"
    assert "ftrace faulted on writing" in r.dmesg and "WARNING: CPU: 0 PID: 1042" in r.dmesg
    assert r.traced_module_functions == []
    assert not r.invariants["ftrace_alive"] and not r.invariants["calls_traced"]
    assert r.trace.splitlines()[2] == "# WARNING: FUNCTION TRACING IS CORRUPTED"
    # ... and the fault came from the emulator's page protection: race_mod text is r-x,
    # made so by CPU 1 after CPU 0's RW step skipped the UNFORMED module.
    rows = [text for cpu, text in r.timeline.lines()]
    ro = next(i for i, t in enumerate(rows) if t.startswith("race_mod: module_enable_ro ffffffffa0000000"))
    rw = next(i for i, t in enumerate(rows) if t.startswith("set_kernel_text_rw"))
    fault = next(i for i, t in enumerate(rows) if "FAULTS (-EPERM)" in t)
    assert rw < ro < fault
    assert not any(t.startswith("set_all_modules_text_rw") for t in rows[:fault])


def test_after_the_kill_tracer_changes_go_through_and_filters_give_enodev(canonical):
    """As on the kernel: the tracers ignore what (un)registering returns, except
    graph_trace_init(); ftrace_regex_open() gives -ENODEV."""
    from ftrace_core.errors import FtraceDead

    system = boot("seed")
    run_scenario(RACE, "seed", system=system)
    system.tracefs.write("current_tracer", "nop")
    assert system.tracefs.read("current_tracer") == "nop\n"
    for file, value in (("current_tracer", "function_graph"), ("set_ftrace_notrace", "vfs_read")):
        with pytest.raises(FtraceDead) as info:
            system.tracefs.write(file, value)
        assert info.value.errno == 19


def test_fixed_kernel_is_clean_and_traces_the_module(canonical):
    r = canonical["fixed"]
    assert not r.ftrace_disabled and r.bug is None and r.faulting_ip is None
    assert all(r.invariants.values()), r.violations
    assert {"race_mod_work", "race_mod_compute", "race_mod_via_kernel", "init_module"} <= set(r.traced_module_functions)
    rows = [(cpu, text) for cpu, text in r.timeline.lines()]
    skipped = next(i for i, (c, t) in enumerate(rows) if c == 0 and t.startswith("race_mod records skipped (DISABLED)"))
    ro = next(i for i, (c, t) in enumerate(rows) if c == 1 and t.startswith("race_mod: module_enable_ro"))
    enabled = next(i for i, (c, t) in enumerate(rows) if c == 1 and t.startswith("race_mod records -> call"))
    assert ro < skipped < enabled


@pytest.mark.parametrize("variant", ["legacy", "seed", "fixed"])
def test_no_race_when_the_module_is_loaded_first(variant):
    r = run_scenario(RACE, variant, LOADED_FIRST)
    assert all(r.invariants.values()), r.violations
    assert "race_mod_work" in r.traced_module_functions


def test_the_printed_schedule_replays_identically():
    first = run_scenario(RACE, "seed", "rr")
    again = run_scenario(RACE, "seed", first.schedule)
    assert again.schedule == first.schedule
    assert json.dumps(again.to_json()) == json.dumps(first.to_json())
    assert again.trace == first.trace and again.dmesg == first.dmesg
    assert again.timeline.render() == first.timeline.render()


def test_a_fix_that_never_enables_module_records_is_caught():
    """A wrong fix: module records stay DISABLED forever.  No fault, but calls are lost."""
    system = boot("fixed")
    system.kernel.modules.hooks.formation_complete.clear()  # no ftrace_module_enable anywhere
    r = run_scenario(RACE, "fixed", system=system)
    assert not r.ftrace_disabled and r.invariants["ftrace_alive"]
    assert not r.invariants["calls_traced"]
    assert any("race_mod_work [race_mod]" in v for v in r.violations["calls_traced"])


def test_race_json_from_the_cli(capsys):
    assert main(["race", "--variant", "legacy", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("variant", "schedule", "ftrace_disabled", "bug", "faulting_ip", "traced_module_functions", "invariants"):
        assert key in data
    assert data["variant"] == "legacy" and data["ftrace_disabled"] is True
    assert set(data["invariants"]) >= {"ftrace_alive", "ref_counts", "call_sites", "text_read_only", "calls_traced"}
    assert main(["race", "--variant", "fixed", "--json", "--schedule", data["schedule"]]) == 0
    fixed = json.loads(capsys.readouterr().out)
    assert fixed["ftrace_disabled"] is False and all(fixed["invariants"].values())


def test_race_timeline_from_the_cli(capsys):
    assert main(["race", "--variant", "seed", "--timeline"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("CPU 0") and "| CPU 1" in out.splitlines()[1]
    assert "FAULTS" in out and "-EPERM" in out


def test_run_a_users_scenario_file(tmp_path, capsys):
    scn = tmp_path / "mine.scn"
    scn.write_text("cpu 0: echo 'race_mod_*' > set_ftrace_filter\n"
                   "cpu 1: insmod race_mod.ko\n"
                   "cpu 0: echo 'race_mod_c*' > set_ftrace_filter\n"
                   "cpu 0: echo function > current_tracer\n"
                   "cpu 1: call race_mod_work 2\n"
                   "cpu 0: cat enabled_functions\n"
                   "schedule: 0@command#2 1@module_live 0 1\n")
    assert main(["run", str(scn), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["variant"] == "fixed" and all(data["invariants"].values())
    first = data["commands"][0]
    # 4.8 has no cached :mod: filters: a glob matching nothing is -EINVAL
    assert first["error"] == "echo: set_ftrace_filter: 'race_mod_*' matches no function"
    assert data["traced_module_functions"] == ["race_mod_compute"]  # race_mod_work calls it; checksum is not called
    listing = next(c for c in data["commands"] if c["command"] == "cat enabled_functions")["output"]
    assert [l.split(" (")[0] for l in listing.splitlines()] == ["race_mod_compute [race_mod]",
                                                                "race_mod_checksum [race_mod]"]


@pytest.mark.parametrize("text,message", [
    ("cpu 2: echo function > current_tracer", "x.scn:1: no CPU '2'"),
    ("cpu 0: echo function > nosuchfile", "x.scn:1: 'nosuchfile' is not a writable tracefs file"),
    ("# ok\ncpu 0: frobnicate", "x.scn:2: unknown command 'frobnicate'"),
    ("cpu 0: insmod nothere.ko", "x.scn:1: insmod: nothere.ko: no such module file"),
    ("cpu 0: call f x", "x.scn:1: 'call f x': arguments must be integers"),
    ("cpu 0: cat\nschedule: 0@", "x.scn:1: 'cat': expected 'cat FILE...'"),
    ("cpu 0: cat trace\nschedule: 5", "x.scn:2: schedule: '5': no CPU 5"),
    ("hello", "x.scn:1: expected 'cpu N: COMMAND'"),
    ("", "x.scn: no commands"),
    ("task 0 bash", "x.scn:1: expected 'task CPU COMM PID', got 'task 0 bash'"),
    ("task 7 bash 1", "x.scn:1: no CPU '7'"),
    ("cpu 0 echo function > current_tracer", "x.scn:1: expected 'cpu N: COMMAND'"),
    ("cpu 0:", "x.scn:1: expected 'cpu N: COMMAND', got 'cpu 0:'"),
    ("cpu 0: echo function", "x.scn:1: 'echo function': echo needs '> FILE' or '>> FILE'"),
    ("cpu 0: echo a > trace extra", "x.scn:1: 'echo a > trace extra': expected 'echo VALUE > FILE'"),
    ("cpu 0: echo 'unterminated > trace", "x.scn:1: \"echo 'unterminated > trace\": No closing quotation"),
    ("cpu 0: insmod a.ko b.ko", "x.scn:1: 'insmod a.ko b.ko': expected 'insmod PATH'"),
    ("cpu 0: rmmod", "x.scn:1: 'rmmod': expected 'rmmod NAME'"),
    ("cpu 0: call", "x.scn:1: 'call': expected 'call SYMBOL ARGS...'"),
    ("cpu 0: call f 1 2 3 4 5 6 7", "x.scn:1: 'call f 1 2 3 4 5 6 7': at most 6 integer arguments"),
    ("cpu 0: cat trace\nschedule: 0@command q=5", "x.scn:2: schedule: 'q=5': q=N must come first"),
    ("cpu 0: cat trace\nschedule: 0@x", "x.scn:2: schedule: no kernel path yields a point 'x'"),
])
def test_bad_scenario_files_name_file_and_line(text, message):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.scn")
    assert str(info.value).startswith(message)


def test_bad_scenario_file_on_the_cli_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.scn"
    bad.write_text("cpu 0: echo function >\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ftrace-emu: error: {bad}:1:") and err.count("\n") == 1
    assert main(["run", str(tmp_path / "missing.scn")]) == 2


def test_the_readme_scenario_example_runs_clean():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("## Scenarios and schedules", 1)[1].split("```")[1]
    r = run_scenario(parse_scenario(block, "README.md"), "fixed")
    assert all(r.invariants.values()) and not any(c.error for c in r.commands)
    assert [c.command for c in r.commands if c.output.startswith("vfs_")] == ["cat enabled_functions"]


def test_commands_that_fail_at_run_time_are_reported_like_a_shell_and_the_run_completes(capsys):
    scn = parse_scenario("cpu 0: rmmod ghost\n"
                         "cpu 0: call no_such_function 1\n"
                         "cpu 0: echo nosuch > set_ftrace_filter\n"
                         "cpu 1: insmod fail_init.ko\n"
                         "cpu 1: call workload_getpid\n", "x.scn")
    r = run_scenario(scn, "fixed")
    errors = [c.error for c in r.commands]
    assert errors == ["rmmod: ghost: module not loaded", "call: unknown symbol no_such_function",
                      "echo: set_ftrace_filter: 'nosuch' matches no function",
                      "insmod: fail_init: init_module returned -19 (ENODEV)", None]
    assert all(r.invariants.values())


@pytest.mark.parametrize("args,message", [
    (["race", "--quantum", "0"], "--quantum must be at least 1"),
    (["run", "race", "--variant", "newest"], "unknown variant 'newest'"),
    (["race", "--schedule", "1@complete_formation#0"], "counts start at 1"),
    (["race", "--schedule", "1@complete_formatoin"], "did you mean complete_formation"),
])
def test_race_and_run_bad_options_exit_2(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
