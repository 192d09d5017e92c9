"""trace-cmd record and extract through the mount: Debian's trace-cmd reads the emulated
kernel's per_cpu/cpuN/trace_pipe_raw pages, events/ formats and kallsyms, and `trace-cmd
report` of what it wrote prints what `cat trace` printed."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from ftrace_core.ringbuffer import decode_page
from ftrace_core.ringbuffer.events import ftrace_events
from test_mount import mounted, sh
from test_tracecmd import pytestmark, trace_cmd  # noqa: F401  (the same skips: FUSE, trace-cmd)
from test_tracedat import events_of, normalize_report, report


@pytest.fixture
def fs_busy(tmp_path):
    yield from mounted(tmp_path, "--activity", "call workload_fs_roundtrip 4")


def _wait_for(mount: Path, text: str) -> None:
    deadline = time.monotonic() + 20
    while text not in sh("cat trace", mount).stdout:
        assert time.monotonic() < deadline, f"{text!r} never reached the trace"
        time.sleep(0.1)


def test_extract_reports_what_cat_trace_printed(fs_busy, tmp_path):
    """The known difference beyond test_tracedat's: the mount's tasks run without being
    switched out, so saved_cmdlines does not hold them and trace-cmd prints `<...>` (as the
    kernel's own `cat trace` would; this machine's names the task from the event)."""
    assert trace_cmd(fs_busy, "start", "-p", "function", "-l", "vfs_*").returncode == 0
    _wait_for(fs_busy, "vfs_write <-ksys_write")
    sh("echo 0 > tracing_on", fs_busy)
    ours = events_of(sh("cat trace", fs_busy).stdout)
    out = tmp_path / "extract.dat"
    done = trace_cmd(fs_busy, "extract", "-o", str(out))
    assert done.returncode == 0, done.stderr
    reported = normalize_report(report(out))
    assert len(ours) > 10
    assert [line.replace("           <...>-", "        workload-") for line in reported] == ours
    stats = sh("cat per_cpu/cpu0/stats per_cpu/cpu1/stats", fs_busy).stdout
    assert stats.count("entries: 0\n") == 2  # extract consumed them


def test_record_takes_the_emulated_kernels_events_and_symbols(fs_busy, tmp_path):
    out = tmp_path / "record.dat"
    done = trace_cmd(fs_busy, "record", "-p", "function", "-l", "vfs_write", "-o", str(out), "--", "sleep", "0.5")
    assert done.returncode == 0, done.stderr
    events = normalize_report(report(out))
    assert events and all(line.endswith(": vfs_write <-ksys_write") for line in events), events[:5]
    assert {line.split("-")[1].split()[0] for line in events} <= {"1100", "1101"}
    # the metadata trace-cmd copied is the emulated kernel's (its kallsyms over /proc/kallsyms)
    dump = subprocess.run(["trace-cmd", "dump", "--kallsyms", "--ftrace-events", str(out)], capture_output=True,
                          text=True, timeout=60).stdout
    assert " T vfs_write\n" in dump and " T workload_fs_roundtrip\n" in dump
    assert all(event.format() in dump for event in ftrace_events(packed_graph=False))
    assert sh("cat current_tracer", fs_busy).stdout == "nop\n"  # record's reset


def test_trace_pipe_raw_reads_pages_and_gives_eagain_when_empty(fs_busy):
    raw = fs_busy / "per_cpu" / "cpu1" / "trace_pipe_raw"
    sh("echo vfs_read > set_ftrace_filter; echo function > current_tracer", fs_busy)
    _wait_for(fs_busy, "vfs_read <-ksys_read")
    sh("echo 0 > tracing_on", fs_busy)
    fd = os.open(raw, os.O_RDONLY)
    try:
        pages = []
        while True:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                break
            assert len(chunk) == 4096
            pages.append(decode_page(chunk))
            os.set_blocking(fd, False)  # fcntl(F_SETFL, O_NONBLOCK), as trace-cmd does, after the open
        with pytest.raises(OSError) as err:
            os.read(fd, 4096)
        assert err.value.errno == errno.EAGAIN
    finally:
        os.close(fd)
    assert pages and all(len(e.data) == 24 and e.data[:2] == b"\x01\x00" for p in pages for e in p.events)
    times = [e.ts for p in pages for e in p.events]
    assert times == sorted(times)
    assert sh("cat events/ftrace/function/id events/header_event", fs_busy).stdout.startswith("1\n# compressed")
