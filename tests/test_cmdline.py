"""The kernel command line's tracing options, parsed as init/main.c and kernel/params.c parse
them and applied where kernel/trace/trace.c and kernel/trace/ftrace.c apply them (the same
code in v4.5.0 and v4.8.17), from `boot(cmdline=...)` and every command's --cmdline."""

from __future__ import annotations

import pytest

from ftrace_core.cli import main
from ftrace_core.cmdline import (COMMAND_LINE_ROOM, DUMP_ALL, DUMP_ORIG, CmdlineError, next_arg, parse_args,
                                 parse_cmdline)
from ftrace_core.kernels import VARIANTS
from ftrace_core.system import boot


def _lines(text: str) -> list[str]:
    return text.splitlines()


# -- parsing --------------------------------------------------------------------------------
def test_next_arg_splits_on_blanks_and_drops_quotes():
    """next_arg(): a quoted value keeps its blanks and loses its quotes; so does a quoted
    whole parameter; parse_args() stops at `--` (what follows is init's)."""
    assert next_arg('ftrace_filter="vfs_read vfs_write" x') == ("ftrace_filter", "vfs_read vfs_write", "x")
    assert next_arg('"a=b c"  d') == ("a", "b c", "d")
    assert next_arg("quiet") == ("quiet", None, "")
    assert parse_args("  a=1 b -- ftrace=function") == ["a=1", "b"]


def test_setup_handlers_take_what_the_kernels_take():
    """obsolete_checksetup(): a handler gets what follows its name ('-' and '_' alike);
    set_ftrace_dump_on_oops() takes a bare name or `=orig_cpu` only; set_cmdline_ftrace()
    keeps MAX_TRACER_SIZE - 1 bytes; set_buf_size() memparse()s and refuses 0;
    set_trace_boot_options()/set_trace_boot_clock() keep their strings."""
    o = parse_cmdline("console=ttyS0 ftrace-filter=vfs_*,do_sys_open ftrace_notrace=vfs_mkdir ftrace_dump_on_oops "
                      "trace_buf_size=64K trace_clock=global trace_options=noprint-parent,nosym-offset "
                      "ftrace_graph_filter=do_sys_open ftrace_graph_notrace=vfs_read")
    assert (o.ftrace_filter, o.ftrace_notrace, o.dump_on_oops, o.trace_buf_size, o.trace_clock, o.trace_options,
            o.graph_filter, o.graph_notrace) == ("vfs_*,do_sys_open", "vfs_mkdir", DUMP_ALL, 65536, "global",
                                                 "noprint-parent,nosym-offset", "do_sys_open", "vfs_read")
    assert parse_cmdline("ftrace_dump_on_oops=orig_cpu").dump_on_oops == DUMP_ORIG
    assert parse_cmdline("ftrace_dump_on_oops=").dump_on_oops == DUMP_ALL
    assert parse_cmdline("ftrace_dump_on_oops=3").dump_on_oops == 0
    assert parse_cmdline("ftrace=" + "f" * 150).bootup_tracer == "f" * 99
    assert parse_cmdline("trace_buf_size=0").trace_buf_size is None
    assert parse_cmdline("trace_buf_size=0x10m").trace_buf_size == 16 << 20
    assert parse_cmdline(None).cmdline == "console=ttyS0"


def test_a_line_the_guest_cannot_hold_is_refused():
    with pytest.raises(CmdlineError, match=f"holds {COMMAND_LINE_ROOM}"):
        parse_cmdline("x" * (COMMAND_LINE_ROOM + 1))
    with pytest.raises(CmdlineError, match="newline"):
        parse_cmdline("a\nb")


# -- at boot ------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_ftrace_equals_function_starts_the_tracer_with_the_early_filters(variant):
    """set_ftrace_early_filters() at the end of ftrace_init(): each comma-separated glob of
    ftrace_filter=/ftrace_notrace= through ftrace_set_regex() on global_ops; then
    register_tracer() starts the ftrace= tracer ("Starting tracer 'function'")."""
    s = boot(variant, cmdline="ftrace=function ftrace_filter=vfs_*,do_sys_open ftrace_notrace=vfs_mkdir")
    log = _lines(s.dmesg())
    assert "Command line: ftrace=function ftrace_filter=vfs_*,do_sys_open ftrace_notrace=vfs_mkdir" in log[1]
    assert log[-1].endswith("Starting tracer 'function'")
    assert s.tracefs.read("current_tracer") == "function\n"
    assert set(s.tracefs.read("set_ftrace_filter").split()) == {
        "do_sys_open", "vfs_open", "vfs_read", "vfs_write", "vfs_caches_init", "vfs_mkdir", "vfs_unlink"}
    assert s.tracefs.read("set_ftrace_notrace") == "vfs_mkdir\n"
    assert [line.split()[0] for line in _lines(s.tracefs.read("enabled_functions"))] == [
        "do_sys_open", "vfs_open", "vfs_read", "vfs_write", "vfs_caches_init", "vfs_unlink"]
    s.call("workload_fs_roundtrip", 1)
    traced = {line.split()[-2] for line in _lines(s.tracefs.read("trace")) if not line.startswith("#")}
    assert traced and traced <= {"do_sys_open", "vfs_open", "vfs_read", "vfs_write", "vfs_unlink"}


def test_function_graph_at_boot_with_graph_filters():
    """set_ftrace_early_graph(): ftrace_graph_filter=/ftrace_graph_notrace= fill the graph
    tables through ftrace_set_func(); ftrace=function_graph starts when init_graph_trace()
    registers it."""
    s = boot("fixed", cmdline="ftrace=function_graph ftrace_graph_filter=do_syscall_64 "
                              "ftrace_graph_notrace=syscall_exit_to_user_mode")
    assert s.tracefs.read("current_tracer") == "function_graph\n"
    assert s.tracefs.read("set_graph_function") == "do_syscall_64\n"
    assert s.tracefs.read("set_graph_notrace") == "syscall_exit_to_user_mode\n"
    s.call("workload_getpid")
    trace = s.tracefs.read("trace")
    assert "do_syscall_64() {" in trace and "get_current_pid();" in trace
    assert "syscall_exit_to_user_mode" not in trace


def test_bad_input_warns_as_the_kernel_does_and_boots():
    """An unknown tracer: clear_boot_tracer() at late_initcall ("ftrace bootup tracer '%s' not
    registered."); an unknown clock: tracer_alloc_buffers() ("Trace clock %s not defined,
    going back to default"); a filter glob matching nothing: ftrace_set_hash() returns
    -EINVAL, which set_ftrace_early_filters() ignores, silently, the others still apply; a
    graph glob matching nothing: "ftrace: function %s not traceable" (KERN_DEBUG); an
    unknown trace option: trace_set_options()'s error is ignored."""
    s = boot("fixed", cmdline="ftrace=nosuch trace_clock=bogus ftrace_filter=nomatch*,do_sys_open "
                              "ftrace_graph_filter=nomatch trace_options=bogus,noprint-parent")
    log = s.dmesg()
    assert "Trace clock bogus not defined, going back to default\n" in log
    assert "ftrace: function nomatch not traceable\n" in log
    assert _lines(log)[-1].endswith("ftrace bootup tracer 'nosuch' not registered.")
    assert not any("nomatch*" in line for line in _lines(log)[2:])  # the filter's miss is silent
    assert s.tracefs.read("current_tracer") == "nop\n"
    assert s.tracefs.read("trace_clock").startswith("[local]")
    assert s.tracefs.read("set_ftrace_filter") == "do_sys_open\n"
    assert s.tracefs.read("set_graph_function") == "#### all functions enabled ####\n"
    assert s.tracefs.read("options/print-parent") == "0\n"


def test_trace_options_clock_and_buffer_size():
    """apply_trace_boot_options() runs again once the boot tracer is up, so a tracer's own
    option (func_stack_trace) applies with ftrace=function and not without; trace_clock=
    picks the clock (tracing_set_clock()); trace_buf_size= the bytes a CPU."""
    s = boot("fixed", cmdline="ftrace=function trace_options=func_stack_trace trace_clock=global "
                              "trace_buf_size=64K")
    assert s.tracefs.read("options/func_stack_trace") == "1\n"
    assert s.tracefs.read("trace_clock").split()[1] == "[global]"
    assert s.tracefs.read("buffer_size_kb") == "64\n"
    assert boot("fixed", cmdline="trace_options=func_stack_trace").tracefs.read("options/func_stack_trace") == "0\n"
    with pytest.raises(CmdlineError, match="trace_buf_size"):
        boot("fixed", cmdline="trace_buf_size=1G")


def test_dump_on_oops_option_sets_the_sysctl():
    """set_ftrace_dump_on_oops(): the kernel.ftrace_dump_on_oops sysctl shows it."""
    assert boot("fixed", cmdline="ftrace_dump_on_oops=orig_cpu").sysctl("kernel.ftrace_dump_on_oops") == "2\n"
    assert boot("fixed").sysctl("kernel.ftrace_dump_on_oops") == "0\n"


# -- the commands -------------------------------------------------------------------------------
def test_boot_command_shows_the_line_and_the_started_tracer(capsys):
    assert main(["boot", "--cmdline", "ftrace=function ftrace_filter=vfs_read"]) == 0
    out = capsys.readouterr().out
    assert "Command line: ftrace=function ftrace_filter=vfs_read\n" in out
    assert "Starting tracer 'function'" in out
    assert out.rstrip().endswith("ftrace: 164 call sites, 1 enabled (current_tracer: function)")


def test_trace_and_run_take_cmdline(capsys, tmp_path):
    assert main(["trace", "--cmdline", "trace_options=noprint-parent", "--filter", "get_current_pid",
                 "--run", "workload_getpid"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(": get_current_pid")
    scn = tmp_path / "s.scn"
    scn.write_text("cmdline: ftrace=nop\ncpu 0: cat current_tracer\n")
    assert main(["run", str(scn), "--cmdline", "ftrace=function", "--json"]) == 0
    assert '"output": "function\\n"' in capsys.readouterr().out


def test_a_scenario_cmdline_is_checked_with_its_line():
    from ftrace_core.scenario import ScenarioError, parse_scenario

    with pytest.raises(ScenarioError, match=r"s.scn:1: kernel command line is 300 bytes"):
        parse_scenario("cmdline: " + "x" * 300 + "\ncpu 0: cat trace\n", "s.scn")


def test_bad_cmdline_is_one_line_and_exit_2(capsys):
    assert main(["boot", "--cmdline", "x" * 300]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "boot_command_line holds 255" in err
    assert main(["explore", "race", "--cmdline", "trace_buf_size=9G", "--limit", "1"]) == 2
    assert "trace_buf_size" in capsys.readouterr().err
