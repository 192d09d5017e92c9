"""The interactive tracefs shell: commands, their output, and errors printed as a shell would."""

from __future__ import annotations

import io

import pytest

import guest
from ftrace_core import boot
from ftrace_core.shell import Shell


@pytest.fixture
def shell():
    return Shell(boot("fixed"), out=io.StringIO())


def run(shell: Shell, *lines: str) -> str:
    """Execute lines, returning what they printed."""
    out = shell.out
    start = out.tell()
    for line in lines:
        assert shell.execute(line) is True
    return out.getvalue()[start:]


def _trace(shell: Shell) -> list[str]:
    return [line for line in run(shell, "cat trace").splitlines() if not line.startswith("#")]


def test_echo_and_cat_filter(shell):
    assert run(shell, "echo vfs_read > set_ftrace_filter") == ""
    assert run(shell, "cat set_ftrace_filter") == "vfs_read\n"
    assert run(shell, "echo 'vfs_write do_sys_open' >> set_ftrace_filter") == ""
    assert sorted(run(shell, "cat set_ftrace_filter").split()) == ["do_sys_open", "vfs_read", "vfs_write"]
    run(shell, "echo vfs_write > set_ftrace_filter")
    assert run(shell, "cat set_ftrace_filter") == "vfs_write\n"


def test_invalid_filter_is_one_line_and_leaves_what_the_kernel_leaves(shell):
    run(shell, "echo vfs_read > set_ftrace_filter")
    out = run(shell, "echo nosuch >> set_ftrace_filter")
    assert out == "echo: write error: Invalid argument (set_ftrace_filter: 'nosuch' matches no function)\n"
    assert run(shell, "cat set_ftrace_filter") == "vfs_read\n"  # O_APPEND: the copy is committed
    run(shell, "echo nosuch > set_ftrace_filter")
    assert run(shell, "cat set_ftrace_filter") == "#### all functions enabled ####\n"  # O_TRUNC emptied it
    assert run(shell, "echo 'vfs_*:frob:x' >> set_ftrace_filter").startswith("echo: write error: Invalid argument (")
    assert run(shell, "echo bogus > current_tracer").startswith("echo: write error: Invalid argument (current_tracer: ")


def test_insmod_and_call(shell):
    assert run(shell, f"insmod {guest.module_path('race_mod')}") == ""
    assert run(shell, "call race_mod_compute 2") == "13\n"
    assert run(shell, "call race_mod_compute 0x2") == "13\n"
    # A shipped module by name; loading it twice fails like insmod does.
    assert run(shell, "insmod race_mod").startswith("insmod: ERROR: could not insert module race_mod: ")
    assert run(shell, "rmmod race_mod") == ""
    assert run(shell, "call race_mod_compute 2") == "call: unknown symbol race_mod_compute\n"
    assert run(shell, "rmmod race_mod").startswith("rmmod: ERROR: ")


def test_insmod_errors(shell):
    assert run(shell, "insmod /nonexistent/x.ko") == (
        "insmod: ERROR: could not load module /nonexistent/x.ko: No such file or directory\n")
    out = run(shell, "insmod fail_init")
    assert out.startswith("insmod: ERROR: could not insert module fail_init: ") and out.count("\n") == 1


def test_trace_after_enabling_function_tracer(shell):
    run(shell, "insmod race_mod", "echo function > current_tracer")
    assert run(shell, "cat current_tracer") == "function\n"
    assert run(shell, "call race_mod_work 2") != ""
    lines = _trace(shell)
    assert any("[000]" in line and "race_mod_compute <-race_mod_work" in line
               for line in lines)


def test_cpu_switch_shows_in_trace(shell):
    run(shell, "insmod race_mod", "echo function > current_tracer", "echo > trace")
    assert run(shell, "cpu 1") == ""
    assert run(shell, "cpu") == "1\n"
    run(shell, "call race_mod_compute 1")
    lines = _trace(shell)
    assert lines and all("[001]" in line for line in lines)
    assert ": race_mod_compute <-guest_return_trap" in lines[0]
    assert run(shell, "cpu 2") == "cpu: no CPU 2: this machine has CPUs 0-1\n"
    assert shell.cpu == 1


def test_unknown_command_and_bad_input(shell):
    assert run(shell, "frob") == "unknown command 'frob' (try help)\n"
    assert run(shell, "call no_such_function") == "call: unknown symbol no_such_function\n"
    assert run(shell, "call race_mod_compute x").startswith("call: ")
    assert run(shell, "echo 'unterminated > trace").startswith("syntax error: ")
    assert run(shell, "cat no_such_file").startswith("cat: ")
    assert run(shell, "echo 1 > available_tracers").startswith("echo: ")
    assert run(shell, "cpu one").startswith("cpu: ")
    for out in (run(shell, line) for line in ("frob", "call", "rmmod", "insmod", "cat")):
        assert out.count("\n") == 1
    assert run(shell, "", "   ", "# a comment") == ""


def test_guest_fault_prints_the_oops(shell):
    out = run(shell, "call vfs_read 0 0 0 0")
    assert out.startswith("BUG: unable to handle kernel NULL pointer dereference")
    assert "IP: [<" in out and "] vfs_read+" in out and "---[ end trace" in out
    assert "BUG: unable to handle kernel NULL pointer dereference" in run(shell, "dmesg")
    assert run(shell, "call race_mod_compute 1").startswith("call: unknown symbol")  # still usable


def test_ls_help_echo_dmesg(shell):
    assert run(shell, "ls").split() == shell.system.tracefs.files
    assert "insmod PATH" in run(shell, "help")
    assert run(shell, "echo hello   world") == "hello world\n"
    assert run(shell, "dmesg") == shell.system.dmesg()


def test_exit_and_quit(shell):
    assert shell.execute("exit") is False
    assert shell.execute("quit") is False
    assert shell.execute("help") is True


def test_run_reads_lines_until_exit():
    out = io.StringIO()
    shell = Shell(boot("fixed"), out=out)
    script = io.StringIO("insmod race_mod\ncall race_mod_compute 2\nfrob\necho vfs_read > set_ftrace_filter\n"
                         "cat set_ftrace_filter\nexit\ncall race_mod_compute 3\n")
    shell.run(script)
    # No prompt for input that is not a terminal; nothing after exit runs.
    assert out.getvalue() == "13\nunknown command 'frob' (try help)\nvfs_read\n"


def test_run_to_end_of_input_and_on_cpu():
    out = io.StringIO()
    shell = Shell(boot("fixed"), cpu=1, out=out)
    shell.run(io.StringIO("cpu\ncall race_mod_compute 1"))  # no trailing newline, no exit
    assert out.getvalue() == "1\ncall: unknown symbol race_mod_compute\n"
