"""The ftrace-emu command line, run in-process."""

from __future__ import annotations

from ftrace_core.cli import main


def test_boot_prints_dmesg_and_memory_map_with_protections(capsys):
    assert main(["boot"]) == 0
    out = capsys.readouterr().out
    # The banner names the tree the default variant models (7dcd182bec27, in v4.5).
    assert "Linux version 4.5.0 (7dcd182bec27 ftrace/module: remove ftrace module notifier) #1 SMP" in out
    assert "ffffffff81000000" in out and "r-x" in out and "kernel .text" in out
    assert "kernel .rodata" in out and "cpu1 stack" in out
    assert "ftrace: allocating 164 entries in 1 pages" in out
    assert "ftrace: 164 call sites, all nops" in out


def test_boot_with_a_missing_image_is_a_one_line_error(capsys, tmp_path):
    assert main(["boot", "--image", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"ftrace-emu: error: {tmp_path / 'nope'}: cannot read: No such file or directory"]


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    assert "boot" in capsys.readouterr().out


def test_version_and_traceback_after_the_command(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ftrace-emu ")
    assert main(["trace", "--run", "nosuch", "--traceback"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_a_closed_pipe_is_quiet_and_ctrl_c_exits_130():
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "ftrace_core.cli"]
    head = subprocess.run(" ".join(cmd) + " trace --workload fs | head -1", shell=True, capture_output=True,
                          text=True, executable="/bin/bash")
    assert head.stdout == "# tracer: function\n" and head.stderr == ""
    piped = subprocess.run(" ".join(cmd) + " trace --workload fs | head -1; exit ${PIPESTATUS[0]}", shell=True,
                           capture_output=True, executable="/bin/bash")
    assert piped.returncode == 0
    # Ctrl-C's default action in the child, whatever this process inherited: a shell without
    # job control starts background jobs with SIGINT ignored, and Python keeps it so.
    p = subprocess.Popen(cmd + ["explore", "--variant", "legacy"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err == "ftrace-emu: interrupted during explore\n"


def test_run_names_every_built_in_scenario(capsys):
    from ftrace_core.scenario import builtin_names

    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in builtin_names())
