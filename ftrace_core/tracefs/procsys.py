"""/proc/sys of a mounted emulated system: a second, small FUSE file system whose files are
the system's sysctls (System.sysctls: kernel/stack_tracer_enabled, ...), outside the tracefs
tree so that tracefs lists only what the kernel's does.

It runs in a process of its own and reaches the system through the tracefs mount's control
socket (ftrace_core.tracefs.control, op "sysctl"), so the tracefs server stays one FUSE
loop.  Tools that write /proc/sys/kernel/... (the kernel's ftrace selftests) see it where
they look once it is bound there in a private mount namespace (scripts/ftracetest.py).

    python -m ftrace_core.tracefs.procsys MOUNTPOINT --tracefs TRACEFS_MOUNT
"""

from __future__ import annotations

import argparse
import errno
import itertools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import FtraceError
from .control import request
from .mount import mfusepy, require_fuse


class ProcSysFuse(mfusepy.Operations if mfusepy is not None else object):  # type: ignore[misc]
    """The sysctls as files: `kernel.stack_tracer_enabled` is kernel/stack_tracer_enabled."""

    use_ns = True

    def __init__(self, tracefs_mount: str):
        self.tracefs_mount = tracefs_mount
        answer = request(tracefs_mount, {"op": "sysctl"})  # FtraceError: no such mount
        self.files = {name.replace(".", "/"): name for name in answer["names"]}
        self._open: dict[int, tuple[str, bytes | None]] = {}
        self._fh = itertools.count(1)
        self._lock = threading.Lock()
        self._mounted_ns = time.time_ns()

    def _ask(self, message: dict) -> dict:
        try:
            answer = request(self.tracefs_mount, {"op": "sysctl", **message})
        except FtraceError:
            raise mfusepy.FuseOSError(errno.EIO) from None
        if "error" in answer:
            raise mfusepy.FuseOSError(answer.get("errno") or errno.EINVAL)
        return answer

    def _children(self, directory: str) -> list[str]:
        prefix = directory + "/" if directory else ""
        return sorted({path[len(prefix):].split("/", 1)[0] for path in self.files if path.startswith(prefix)})

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        t = self._mounted_ns
        common = {"st_uid": 0, "st_gid": 0, "st_atime": t, "st_mtime": t, "st_ctime": t}
        name = path.strip("/")
        if name in self.files:  # proc files have no size either
            return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": 0, **common}
        if name == "" or self._children(name):
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, **common}
        raise mfusepy.FuseOSError(errno.ENOENT)

    def readdir(self, path: str, fh: int) -> list[str]:
        name = path.strip("/")
        if name in self.files:
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        return [".", "..", *self._children(name)]

    def open(self, path: str, flags: int) -> int:
        name = path.strip("/")
        if name not in self.files:
            raise mfusepy.FuseOSError(errno.ENOENT)
        with self._lock:
            fh = next(self._fh)
            self._open[fh] = (self.files[name], None)
        return fh

    def create(self, path: str, mode: int, fi=None) -> int:
        raise mfusepy.FuseOSError(errno.EACCES)  # no new names under /proc/sys

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        name, data = self._open[fh]
        if data is None:
            data = self._ask({"name": name})["value"].encode()
            with self._lock:
                self._open[fh] = (name, data)
        return data[offset:offset + size]

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        name, _ = self._open[fh]
        self._ask({"name": name, "value": bytes(data).decode("latin-1")})
        return len(data)

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            self._open.pop(fh, None)
        return 0


def serve(mountpoint: str, tracefs_mount: str) -> None:
    """Serve the sysctls of the system mounted at tracefs_mount on mountpoint, until unmounted."""
    require_fuse()
    fs = ProcSysFuse(tracefs_mount)
    mfusepy.FUSE(fs, mountpoint, foreground=True, fsname="ftrace-emu-procsys", subtype="ftrace-emu-procsys",
                 direct_io=True, default_permissions=True, allow_other=os.geteuid() == 0)


@contextmanager
def mounted(tracefs_mount: str | Path) -> Iterator[Path]:
    """The sysctls of the system mounted at tracefs_mount, served by a process of their own
    on a scratch directory for the duration (kernel/ftrace_enabled is that directory's
    kernel/ftrace_enabled); unmounted afterwards."""
    require_fuse()
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="ftrace-emu-procsys-") as where:
        server = subprocess.Popen([sys.executable, "-m", "ftrace_core.tracefs.procsys", where,
                                   "--tracefs", str(Path(tracefs_mount).resolve())],
                                  cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(200):
                if os.path.ismount(where):
                    break
                if server.poll() is not None:
                    why = server.stderr.read().decode(errors="replace").strip().splitlines()
                    raise FtraceError(f"{tracefs_mount}: the procsys mount failed: {why[-1] if why else server.returncode}")
                time.sleep(0.05)
            else:
                raise FtraceError(f"{tracefs_mount}: the procsys mount did not come up")
            yield Path(where)
        finally:
            if os.path.ismount(where):
                tool = shutil.which("fusermount3") or shutil.which("fusermount")
                subprocess.run([tool, "-u", where] if tool else ["umount", where],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a mounted ftrace-emu system's /proc/sys (its sysctls).")
    parser.add_argument("mountpoint", help="an empty directory")
    parser.add_argument("--tracefs", required=True, help="where ftrace-emu mount put the system's tracefs")
    args = parser.parse_args(argv)
    serve(args.mountpoint, args.tracefs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
