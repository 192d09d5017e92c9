"""Every command on the committed guest, against golden output where output is deterministic.

Regenerate a golden after an intended change with:
    python -m ftrace_core.cli <args> > tests/golden/<name>
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from ftrace_core.cli import main

GOLDEN = Path(__file__).parent / "golden"

COMMANDS = {
    "cli_boot.txt": ["boot"],
    "cli_disasm_vfs_read.txt": ["disasm", "vfs_read", "--tracer", "function"],
    "cli_functions_vfs.txt": ["functions", "vfs_*"],
    "cli_trace_graph.txt": ["trace", "--tracer", "function_graph", "--filter", "do_syscall_64",
                            "--filter", "__x64_sys_*", "--filter", "get_current_pid", "--run", "workload_getpid"],
}


@pytest.mark.parametrize("golden", sorted(COMMANDS))
def test_command_output_matches_golden(capsys, golden):
    assert main(COMMANDS[golden]) == 0
    assert capsys.readouterr().out == (GOLDEN / golden).read_text()


def test_shell_reads_commands_from_stdin(capsys, monkeypatch):
    script = ("echo 'get_current_pid' > set_ftrace_filter\n"
              "echo function > current_tracer\n"
              "call workload_getpid\n"
              "cat trace\n"
              "echo nosuch >> set_ftrace_filter\n"
              "cat set_ftrace_filter\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert main(["shell"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1042"  # the shell's own task, returned by the guest's getpid
    assert out[-3].endswith(": get_current_pid <-__x64_sys_getpid") and out[-3].lstrip().startswith("sh-1042 ")
    assert out[-2] == "echo: write error: Invalid argument (set_ftrace_filter: 'nosuch' matches no function)"
    assert out[-1] == "get_current_pid"


def test_disasm_errors(capsys):
    assert main(["disasm", "nosuch"]) == 2
    assert capsys.readouterr().err == "ftrace-emu: error: unknown symbol nosuch\n"
    assert main(["disasm", "jiffies"]) == 2
    assert capsys.readouterr().err == "ftrace-emu: error: jiffies is not a function\n"
