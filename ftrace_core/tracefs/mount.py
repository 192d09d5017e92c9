"""The emulated system's tracefs as a FUSE file system: `cat`, `echo` and anyone's tools work
on it unchanged.

Every FUSE call maps onto the one open/read/write/release model of ftrace_core.tracefs (as
the kernel's file_operations): open makes a handle, writes go to it, release commits it.
The handles and the System live on the engine thread (tracefs.live); the FUSE threads only
submit work to it and wait.  Reads of `trace_pipe` block until there is something to read,
as the kernel's do, and give up when the reader is interrupted (Ctrl-C on `cat`).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import threading
import time
from typing import Any

from ..errors import FtraceError, TracefsError
from .live import LiveSystem

try:  # mfusepy finds libfuse when imported
    import mfusepy
except (ImportError, OSError) as _exc:  # reported by require_fuse()
    mfusepy = None
    _FUSE_ERROR = str(_exc)
else:
    _FUSE_ERROR = ""

O_NONBLOCK = os.O_NONBLOCK
#: How often a blocked trace_pipe read looks again (and checks for an interrupt).
PIPE_POLL_S = 0.05


def require_fuse() -> None:
    """A one-line error naming what to install when FUSE cannot be used here."""
    if mfusepy is None:
        if "mfusepy" in _FUSE_ERROR:
            raise TracefsError("mounting needs the mfusepy package (pip install mfusepy)", errno.ENOSYS)
        raise TracefsError("mounting needs libfuse3 (apt-get install fuse3)", errno.ENOSYS)
    if not os.path.exists("/dev/fuse"):
        raise TracefsError("mounting needs /dev/fuse (modprobe fuse, or a machine or container with FUSE)",
                           errno.ENODEV)


class _Open:
    """One open file: the tracefs handle and, for trace_pipe, what was taken but not read."""

    def __init__(self, name: str, handle: Any, flags: int):
        self.name, self.handle, self.flags = name, handle, flags
        self.pending = b""
        self.data: bytes | None = None  # the file as this open shows it (seq_file), encoded once
        self.read_flags: int | None = None  # f_flags at the last read (fcntl may have set O_NONBLOCK)


class TracefsFuse(mfusepy.Operations if mfusepy is not None else object):  # type: ignore[misc]
    use_ns = True

    def __init__(self, live: LiveSystem, on_ready=None):
        self.live = live
        self.on_ready = on_ready
        self.tracefs = live.system.tracefs
        self._open: dict[int, _Open] = {}
        self._fh = itertools.count(1)
        self._lock = threading.Lock()
        self._mounted_ns = time.time_ns()

    def init(self, path: str) -> None:
        if self.on_ready is not None:
            self.on_ready()

    # -- the tree ---------------------------------------------------------------------------
    def _name(self, path: str) -> str:
        name = path.lstrip("/")
        if name not in self.tracefs.modes:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return name

    def _children(self, directory: str) -> list[str]:
        """The names in a directory ('' is the top): files and subdirectories (instances/
        is there even when empty)."""
        prefix = directory + "/" if directory else ""
        names = list(self.tracefs.modes) + sorted(self.tracefs.dirs)
        return sorted({name[len(prefix):].split("/", 1)[0] for name in names if name.startswith(prefix)})

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        t = self._mounted_ns
        common = {"st_uid": 0, "st_gid": 0, "st_atime": t, "st_mtime": t, "st_ctime": t}
        name = path.strip("/")
        modes = self.tracefs.modes
        if name == "" or name in self.tracefs.dirs or (name not in modes and self._children(name)):
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, **common}
        name = self._name(path)
        # tracefs files have no size: readers read until a read returns nothing
        return {"st_mode": stat.S_IFREG | modes[name], "st_nlink": 1, "st_size": 0, **common}

    def readdir(self, path: str, fh: int) -> list[str]:
        name = path.strip("/")
        if name in self.tracefs.modes:
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        children = self._children(name)
        if name and not children and name not in self.tracefs.dirs:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return [".", "..", *children]

    # -- open, read, write, release -------------------------------------------------------------
    def open(self, path: str, flags: int) -> int:
        name = self._name(path)
        handle = self._call(lambda s: s.tracefs.open(name, flags))
        with self._lock:
            fh = next(self._fh)
            self._open[fh] = _Open(name, handle, flags)
        return fh

    def mkdir(self, path: str, mode: int) -> int:
        """instance_mkdir() under instances/; -EPERM anywhere else."""
        self._call(lambda s: s.tracefs.mkdir(path.strip("/")))
        return 0

    def rmdir(self, path: str) -> int:
        """instance_rmdir(): -EBUSY while one of its files is open."""
        self._call(lambda s: s.tracefs.rmdir(path.strip("/")))
        return 0

    def create(self, path: str, mode: int, fi=None) -> int:
        # tracefs's directories have no ->create: the VFS refuses with -EACCES (a name that
        # exists is opened by open(), even with O_CREAT).
        raise mfusepy.FuseOSError(errno.EACCES)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        # `>` on a file: the open carried O_TRUNC already (atomic_o_trunc); nothing more.
        self._name(path)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        f = self._open[fh]
        if f.name.endswith(("trace_pipe", "trace_pipe_raw")):  # and per_cpu/cpuN/'s: they block, consume
            return self._read_pipe(f, size)
        if f.data is None:
            f.data = self._call(lambda s: f.handle.read()).encode("utf-8", "surrogateescape")  # bytes as printed (bin)
        return f.data[offset:offset + size]

    def _read_pipe(self, f: _Open, size: int) -> bytes:
        """tracing_read_pipe() (tracing_buffers_read() for trace_pipe_raw): wait for events
        unless O_NONBLOCK; each read consumes."""
        while not f.pending:
            got = self._call(lambda s: f.handle.read_pipe())
            # trace_pipe_raw's reader gives the pages' bytes; trace_pipe's text is encoded
            f.pending = got if isinstance(got, bytes) else got.encode("utf-8", "surrogateescape")
            if f.pending:
                break
            if (f.flags if f.read_flags is None else f.read_flags) & O_NONBLOCK:
                raise mfusepy.FuseOSError(errno.EAGAIN)
            if mfusepy._libfuse.fuse_interrupted():
                raise mfusepy.FuseOSError(errno.EINTR)
            with self.live.stepped:
                self.live.stepped.wait(PIPE_POLL_S)
        data, f.pending = f.pending[:size], f.pending[size:]
        return data

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        f = self._open[fh]
        return self._call(lambda s: f.handle.write(bytes(data)))

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            f = self._open.pop(fh, None)
        if f is not None:
            self._call(lambda s: f.handle.release())
        return 0

    def _call(self, fn):
        """fn on the engine thread; a tracefs error becomes its errno, as the kernel returns."""
        try:
            return self.live.submit(fn)
        except FtraceError as exc:  # TracefsError, and FtraceDead's -ENODEV
            raise mfusepy.FuseOSError(exc.errno or errno.EINVAL) from None


class _FuseWithReadFlags(mfusepy.FUSE if mfusepy is not None else object):  # type: ignore[misc]
    """mfusepy's FUSE, telling each read the file's flags as they are at that read: FUSE_READ
    carries f_flags, so an fcntl(F_SETFL, O_NONBLOCK) after the open (trace-cmd's on
    trace_pipe_raw) is seen, as the kernel's tracing_buffers_read() sees it."""

    def read(self, path, buf, size, offset, fip):
        opened = self.operations._open.get(fip.contents.fh)
        if opened is not None:
            opened.read_flags = fip.contents.flags
        return super().read(path, buf, size, offset, fip)


def serve(live: LiveSystem, mountpoint: str, on_ready=None) -> None:
    """Mount and serve until unmounted (umount, Ctrl-C, SIGTERM); libfuse unmounts on the way
    out, so no dead mount is left behind.  on_ready is called once the mount is up."""
    from .control import ControlServer

    require_fuse()
    control = ControlServer(live, mountpoint)  # insmod/rmmod --mount reach the system here
    live.start()
    control.start()
    try:
        _FuseWithReadFlags(TracefsFuse(live, on_ready), mountpoint, foreground=True, fsname="tracefs",
                     subtype="tracefs", direct_io=True, default_permissions=True, allow_other=os.geteuid() == 0)
    finally:
        control.close()
        live.stop()
