"""The tracefs mounted with FUSE (ftrace-emu mount), driven with the shell's own cat and echo
and plain system calls, as a kernel developer drives /sys/kernel/tracing."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftrace_core.system import boot

#: The files and modes of the tree a default mount serves (the fixed variant's).
FILE_MODES = boot().tracefs.modes


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse: {exc}"
    return None


_MISSING = _fuse_missing()
if _MISSING and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI must run the mount tests, but: {_MISSING}")
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "ftrace_core.cli", *args], capture_output=True, text=True,
                          timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"ftrace-emu {' '.join(args)}: {done.returncode}: {done.stderr}")
    return done


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30)


def mounted(tmp_path: Path, *args: str):
    """A fresh system's tracefs mounted at tmp_path/tracing for one test (a fixture's body)."""
    path = tmp_path / "tracing"
    path.mkdir()
    _cli("mount", str(path), *args)
    try:
        yield path
    finally:
        if os.path.ismount(path):
            _cli("umount", str(path))


@pytest.fixture
def idle(tmp_path):
    """A mount whose CPUs run nothing: its trace changes only when told to."""
    yield from mounted(tmp_path, "--activity", "none")


@pytest.fixture
def busy(tmp_path):
    yield from mounted(tmp_path, "--activity", "call workload_getpid")


def test_the_listing_and_modes_are_tracefs(idle):
    names = sorted(str(p.relative_to(idle)) for p in idle.rglob("*") if p.is_file())
    assert names == sorted(FILE_MODES)
    assert stat.S_IMODE((idle / "events").stat().st_mode) == 0o755
    for name in names:
        mode = (idle / name).stat().st_mode
        assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == FILE_MODES[name], name
    # as tracer_init_tracefs() (kernel/trace/trace.c) creates them
    assert FILE_MODES["trace_pipe"] == 0o444 and FILE_MODES["set_ftrace_filter"] == 0o644
    assert "fuse.tracefs" in Path("/proc/mounts").read_text() or "tracefs" in Path("/proc/mounts").read_text()


def test_cat_and_echo_drive_the_tracer(idle):
    assert sh("cat available_tracers", idle).stdout == "function_graph function nop\n"
    assert sh("echo function > current_tracer && cat current_tracer", idle).stdout == "function\n"
    done = sh("echo no_such_tracer > current_tracer", idle)
    assert done.returncode == 1 and "Invalid argument" in done.stderr  # -EINVAL, as the kernel's
    assert sh("cat current_tracer", idle).stdout == "function\n"


def test_filter_files_follow_ftrace_regex_open_write_release(idle):
    """'>' truncates at open, '>>' appends, a token split across writes is joined, and a
    write that matches nothing fails with -EINVAL (kernel/trace/ftrace.c ftrace_regex_write)."""
    assert sh("echo 'vfs_r*' > set_ftrace_filter && cat set_ftrace_filter", idle).stdout == "vfs_read\n"
    assert sh("echo vfs_write >> set_ftrace_filter && cat set_ftrace_filter", idle).stdout == "vfs_read\nvfs_write\n"
    fd = os.open(idle / "set_ftrace_filter", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"vfs_op")
        os.write(fd, b"en\n")
    finally:
        os.close(fd)
    assert sh("cat set_ftrace_filter", idle).stdout == "vfs_open\nvfs_read\nvfs_write\n"
    done = sh("echo no_such_function > set_ftrace_filter", idle)
    assert done.returncode == 1 and "Invalid argument" in done.stderr
    assert sh("echo > set_ftrace_filter; cat set_ftrace_filter", idle).stdout == "#### all functions enabled ####\n"


def test_a_read_only_file_refuses_writes(idle):
    assert sh("echo x > available_tracers", idle).returncode == 1
    with pytest.raises(OSError) as info:
        os.open(idle / "no_such_file", os.O_RDONLY)
    assert info.value.errno == errno.ENOENT


def test_trace_pipe_blocks_until_events_and_consumes_them(busy):
    assert sh("echo get_current_pid > set_ftrace_filter && echo function > current_tracer", busy).returncode == 0
    got = sh("timeout 20 head -n 3 trace_pipe", busy)
    assert got.returncode == 0
    lines = got.stdout.splitlines()
    assert len(lines) == 3 and all("get_current_pid <-__x64_sys_getpid" in line for line in lines)
    assert {line.split()[1] for line in lines} <= {"[000]", "[001]"}


def test_trace_pipe_without_events_blocks_or_says_eagain(idle):
    fd = os.open(idle / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            os.read(fd, 4096)
    finally:
        os.close(fd)
    started = time.monotonic()
    done = sh("timeout 1 cat trace_pipe", idle)
    assert done.returncode == 124 and done.stdout == "" and time.monotonic() - started >= 0.9


def test_the_guest_runs_while_mounted_and_truncating_trace_clears_it(busy):
    sh("echo function > current_tracer", busy)
    deadline = time.monotonic() + 20
    while "[001]" not in (text := sh("cat trace", busy).stdout) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "[000]" in text and "[001]" in text  # both CPUs run the activity
    sh("echo 0 > tracing_on && echo > trace", busy)
    assert "entries-in-buffer/entries-written: 0/0" in sh("cat trace", busy).stdout


def test_mount_refuses_a_busy_directory_and_umount_leaves_nothing(idle):
    done = _cli("mount", str(idle), check=False)
    assert done.returncode == 2 and "already a mount point" in done.stderr
    _cli("umount", str(idle))
    assert not os.path.ismount(idle)
    done = _cli("umount", str(idle), check=False)
    assert done.returncode == 2 and "not mounted" in done.stderr


def test_modules_load_and_unload_on_the_running_system(idle):
    import guest

    hello = str(guest.module_path("hello"))
    sh("echo printk > set_ftrace_filter && echo function > current_tracer", idle)
    done = _cli("insmod", hello, "--mount", str(idle))
    assert "hello: Hello, world" in done.stderr
    # loaded by an insmod task of its own, as on a running box
    assert "insmod-2001  [000]" in sh("cat trace", idle).stdout
    assert "hello_answer [hello]" in sh("cat available_filter_functions", idle).stdout
    again = _cli("insmod", hello, "--mount", str(idle), check=False)
    assert again.returncode == 2 and "already loaded" in again.stderr
    assert "Goodbye, world" in _cli("rmmod", "hello", "--mount", str(idle)).stderr
    assert "[hello]" not in sh("cat available_filter_functions", idle).stdout
    gone = _cli("rmmod", "hello", "--mount", str(idle), check=False)
    assert gone.returncode == 2 and "not loaded" in gone.stderr


WRITABLE = sorted(name for name, mode in FILE_MODES.items() if mode & 0o200)


def test_garbage_and_huge_writes_give_errors_never_a_dead_mount(idle):
    import random

    rng = random.Random(1234)
    for name in WRITABLE:
        for size in (1, 7, 300, 70000):
            data = bytes(rng.randrange(256) for _ in range(size))
            fd = os.open(idle / name, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, data)
            except OSError as exc:
                assert exc.errno in (errno.EINVAL, errno.ENOMEM, errno.ERANGE, errno.EBUSY), (name, exc)
            finally:
                os.close(fd)
    # a megabyte of real tokens: taken a token a write, as trace_get_user() does
    big = sh("python3 -c \"print(' '.join(['vfs_read'] * 100000))\" > set_ftrace_filter; echo $?", idle)
    assert big.stdout.strip() == "0"
    assert sh("cat set_ftrace_filter", idle).stdout == "vfs_read\n"
    assert sh("cat current_tracer tracing_on", idle).returncode == 0  # still served


def test_concurrent_writers_and_readers_from_several_processes(busy):
    script = ("for i in $(seq 20); do echo function > current_tracer; echo nop > current_tracer; done & "
              "for i in $(seq 20); do echo 'vfs_*' > set_ftrace_filter; echo > set_ftrace_filter; done & "
              "for i in $(seq 20); do cat trace > /dev/null; cat set_ftrace_filter > /dev/null; done & "
              "wait")
    done = sh(script, busy)
    assert done.returncode == 0 and done.stderr == ""
    assert sh("cat current_tracer", busy).stdout == "nop\n"
    assert sh("cat set_ftrace_filter", busy).stdout == "#### all functions enabled ####\n"


def test_a_dead_ftrace_gives_enodev_through_the_mount():
    """ftrace_regex_open() and ftrace_graph_open() return -ENODEV once ftrace is dead: the
    mount passes the errno on (bash prints "No such device")."""
    import mfusepy

    from ftrace_core.system import boot
    from ftrace_core.tracefs.live import Activity, LiveSystem
    from ftrace_core.tracefs.mount import TracefsFuse

    s = boot("fixed")
    s.ftrace.ftrace_disabled = True
    ops = TracefsFuse(LiveSystem(s, Activity(None)))  # not started: calls run here
    for name in ("set_ftrace_filter", "set_graph_function"):
        with pytest.raises(mfusepy.FuseOSError) as info:
            ops.open(f"/{name}", os.O_WRONLY | os.O_TRUNC)
        assert info.value.errno == errno.ENODEV


def test_mkdir_and_rmdir_make_and_remove_instances(idle):
    """instance_mkdir()/instance_rmdir() through the VFS: mkdir only in instances/, rmdir
    refused while a file of the instance is open."""
    assert sh("ls instances", idle).stdout == ""
    assert sh("mkdir instances/foo && cat instances/foo/current_tracer instances/foo/available_tracers",
              idle).stdout == "nop\nfunction nop\n"
    assert "Operation not permitted" in sh("mkdir options/foo", idle).stderr
    assert "File exists" in sh("mkdir instances/foo", idle).stderr
    busy = sh("exec 3<instances/foo/trace_pipe; rmdir instances/foo; echo $?", idle)
    assert "Device or resource busy" in busy.stderr and busy.stdout == "1\n"
    assert sh("rmdir instances/foo && ls instances", idle).stdout == ""
