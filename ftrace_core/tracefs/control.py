"""The mount's control socket: what is not a tracefs file (loading and unloading modules)
reaches a mounted system through a Unix socket of the project's own, outside the tracefs tree.

One JSON object a line each way: {"op": "insmod", "path": ..., "cpu": N} or {"op": "rmmod",
"name": ..., "cpu": N}; the answer is {"ok": true, "dmesg": new lines} or {"error": message,
"kind": "input" | "system"}.  {"op": "sysctl", "name": ..., "value": ...} reads (or writes, then
reads) a sysctl of the system: what the procsys mount serves.  {"op": "kallsyms"} gives the
emulated kernel's /proc/kallsyms (for trace-cmd, which reads it from /proc).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
from pathlib import Path

from emu.cpu import Task
from emu.errors import EmuError, GuestFault

from ..errors import FtraceError
from .live import LiveSystem


def socket_path(mountpoint: str | Path) -> Path:
    """Where the server of the mount at mountpoint listens (per user, per mount point)."""
    key = hashlib.sha256(str(Path(mountpoint).resolve()).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"ftrace-emu-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"mount-{key}.sock"


#: The first insmod/rmmod task's pid (the activity's tasks are 1100 and 1101).
FIRST_PID = 2001


class ControlServer:
    def __init__(self, live: LiveSystem, mountpoint: str | Path):
        self.live = live
        self._pid = FIRST_PID - 1  # the pids of the insmod/rmmod tasks, one more a request
        self.path = socket_path(mountpoint)
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(4)
        self._thread = threading.Thread(target=self._serve, name="ftrace-emu control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._sock.close()
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn, conn.makefile("rw") as stream:
                for line in stream:
                    stream.write(json.dumps(self._answer(line)) + "\n")
                    stream.flush()

    def _answer(self, line: str) -> dict:
        try:
            req = json.loads(line)
            op, cpu = req.get("op"), int(req.get("cpu", 0))
        except (ValueError, AttributeError, TypeError):
            return {"error": "a request is one JSON object a line", "kind": "input"}

        if op == "sysctl":  # the procsys mount's files (ftrace_core.tracefs.procsys)
            return self._sysctl(req)
        if op == "kallsyms":  # /proc/kallsyms of the emulated kernel, for trace-cmd record
            from ..ringbuffer.tracedat import kallsyms_text

            return {"ok": True, "kallsyms": self.live.submit(lambda system: kallsyms_text(system.kernel.kallsyms))}

        def run(system):
            if op not in ("insmod", "rmmod"):
                raise FtraceError(f"unknown request {op!r} (insmod, rmmod)")
            before = system.dmesg()
            # as on a running box, the module is loaded by an insmod (rmmod) process: a new
            # task on that CPU for the request, then the CPU's task again
            if not 0 <= cpu < len(system.cpus):
                raise FtraceError(f"no CPU {cpu}: this machine has CPUs 0-{len(system.cpus) - 1}")
            running = system.cpus[cpu]
            saved = running.task
            self._pid += 1
            running.set_task(Task(op, self._pid))
            try:
                if op == "insmod":
                    system.insmod(str(req["path"]), cpu=cpu)
                else:
                    system.rmmod(str(req["name"]), cpu=cpu)
            finally:
                running.set_task(saved)
            return system.dmesg()[len(before):]

        try:
            return {"ok": True, "dmesg": self.live.submit(run)}
        except GuestFault as exc:
            return {"error": exc.report, "kind": "system"}
        except (FtraceError, EmuError, KeyError) as exc:
            return {"error": str(exc), "kind": "input"}

    def _sysctl(self, req: dict) -> dict:
        """{"op": "sysctl"}: the names; with "name": its value; with "value" too: written
        first.  An error carries the kernel's errno."""
        name, value = req.get("name"), req.get("value")

        def run(system):
            if name is None:
                return {"ok": True, "names": system.sysctls.names}
            if value is not None:
                system.sysctls.write(str(name), str(value))
            return {"ok": True, "value": system.sysctls.read(str(name))}

        try:
            return self.live.submit(run)
        except FtraceError as exc:
            return {"error": str(exc), "kind": "input", "errno": exc.errno}


def request(mountpoint: str | Path, message: dict) -> dict:
    """Send one request to the server of a mount and return its answer."""
    path = socket_path(mountpoint)
    if not os.path.ismount(mountpoint) or not path.exists():
        raise FtraceError(f"{mountpoint}: no tracefs mounted by ftrace-emu mount there")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise FtraceError(f"{mountpoint}: its server does not answer ({exc.strerror})") from None
        with sock.makefile("rw") as stream:
            stream.write(json.dumps(message) + "\n")
            stream.flush()
            answer = stream.readline()
    if not answer:
        raise FtraceError(f"{mountpoint}: its server closed the connection")
    return json.loads(answer)
