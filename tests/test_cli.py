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
