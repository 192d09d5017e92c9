"""Debian's trace-cmd driving the emulated kernel through its mounted tracefs
(ftrace-emu trace-cmd): it changes the emulated kernel as it would a real one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_mount import _MISSING, mounted, sh

_NO_TRACE_CMD = None if shutil.which("trace-cmd") else "no trace-cmd (apt-get install trace-cmd)"
if _NO_TRACE_CMD and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI must run the trace-cmd tests, but: {_NO_TRACE_CMD}")
pytestmark = pytest.mark.skipif(bool(_MISSING or _NO_TRACE_CMD), reason=_MISSING or _NO_TRACE_CMD or "")


def trace_cmd(mount: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftrace_core.cli", "trace-cmd", "--mount", str(mount), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def fs_busy(tmp_path):
    yield from mounted(tmp_path, "--activity", "call workload_fs_roundtrip 4")


def test_list_shows_the_emulated_kernels_tracers_and_functions(fs_busy):
    assert trace_cmd(fs_busy, "list", "-t").stdout.split() == sh("cat available_tracers", fs_busy).stdout.split()
    listed = trace_cmd(fs_busy, "list", "-f").stdout.split()
    assert listed and listed == sh("cat available_filter_functions", fs_busy).stdout.split()


def test_start_show_stop_drive_the_emulated_kernel(fs_busy):
    sysctl = Path("/proc/sys/kernel/ftrace_enabled")
    host_before = sysctl.read_text() if sysctl.exists() else None
    done = trace_cmd(fs_busy, "start", "-p", "function", "-l", "vfs_*")
    assert done.returncode == 0, done.stderr
    assert sh("cat current_tracer", fs_busy).stdout == "function\n"
    chosen = sh("cat set_ftrace_filter", fs_busy).stdout.split()
    assert chosen == [f for f in sh("cat available_filter_functions", fs_busy).stdout.split() if f.startswith("vfs_")]
    assert "vfs_write" in chosen
    deadline = time.monotonic() + 20
    while "vfs_write <-ksys_write" not in (shown := trace_cmd(fs_busy, "show").stdout):
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    assert shown.startswith("# tracer: function\n")
    assert trace_cmd(fs_busy, "stop").returncode == 0
    assert sh("cat tracing_on", fs_busy).stdout == "0\n"
    # trace-cmd wrote "1" to ftrace_enabled: into the emulated kernel's, bound in its namespace
    assert (sysctl.read_text() if sysctl.exists() else None) == host_before


def test_trace_cmds_ftrace_enabled_write_reaches_the_emulated_kernel(fs_busy):
    """trace-cmd start writes "1" to /proc/sys/kernel/ftrace_enabled: the emulated
    kernel.ftrace_enabled (ftrace_enable_sysctl(), kernel/trace/ftrace.c) is what it writes."""
    from ftrace_core.tracefs.control import request

    if not Path("/proc/sys/kernel/ftrace_enabled").exists():
        pytest.skip("the host has no /proc/sys/kernel/ftrace_enabled to bind over")
    assert request(fs_busy, {"op": "sysctl", "name": "kernel.ftrace_enabled", "value": "0"})["value"] == "0\n"
    assert trace_cmd(fs_busy, "start", "-p", "function", "-l", "vfs_write").returncode == 0
    assert request(fs_busy, {"op": "sysctl", "name": "kernel.ftrace_enabled"})["value"] == "1\n"
    assert "vfs_write (1)" in sh("cat enabled_functions", fs_busy).stdout


def test_trace_cmd_without_a_mount_gets_a_fresh_system():
    done = subprocess.run([sys.executable, "-m", "ftrace_core.cli", "trace-cmd", "list", "-t"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["function_graph", "function", "nop"]


def test_an_unknown_trace_cmd_command_exits_non_zero(fs_busy):
    assert trace_cmd(fs_busy, "no-such-command").returncode != 0


def test_start_function_graph_with_graph_filters(fs_busy):
    done = trace_cmd(fs_busy, "start", "-p", "function_graph", "-g", "vfs_write", "-n", "kmalloc")
    assert done.returncode == 0, done.stderr
    assert sh("cat current_tracer set_graph_function set_graph_notrace", fs_busy).stdout == \
        "function_graph\nvfs_write\nkmalloc\n"
    deadline = time.monotonic() + 20
    while "vfs_write() {" not in (shown := trace_cmd(fs_busy, "show").stdout):
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    graph = [line for line in shown.splitlines() if not line.startswith("#")]
    assert graph and all("|" in line for line in graph)
    assert not any("kmalloc" in line for line in graph)


def test_reset_puts_the_emulated_kernel_back(fs_busy):
    """trace-cmd reset (trace-record.c trace_reset()): tracing off then on, nop, the clock
    back to local, every filter file emptied."""
    assert trace_cmd(fs_busy, "start", "-p", "function_graph", "-g", "vfs_write", "-n", "kmalloc").returncode == 0
    sh("echo vfs_read > set_ftrace_filter; echo counter > trace_clock; echo 0 > tracing_on", fs_busy)
    done = trace_cmd(fs_busy, "reset")
    assert done.returncode == 0 and "writing to" not in done.stderr, done.stderr
    shown = sh("cat current_tracer tracing_on set_ftrace_filter set_ftrace_notrace set_graph_function "
               "set_graph_notrace trace_clock", fs_busy).stdout
    empty = "#### all functions enabled ####\n#### no functions disabled ####\n"  # t_show(), g_show()
    assert shown == "nop\n1\n" + empty + empty + "[local] global counter uptime perf mono mono_raw x86-tsc\n"
