"""Debian's real trace-cmd against the emulated tracefs.

libtracefs looks for a mount of type exactly `tracefs`, which a FUSE mount is not; it honours
tracefs_set_tracing_dir(), which a preloaded library of our own calls (preload/settracingdir.c,
built with the system's gcc).  trace-cmd also writes /proc/sys/kernel/ftrace_enabled: it runs
in a private mount namespace (`unshare -m`) where the emulated kernel's own
kernel.ftrace_enabled (served by a procsys mount, ftrace_core.tracefs.procsys) is bound over
that path, so its write reaches the emulated kernel and the host's sysctl is never touched;
the emulated kernel's kallsyms (from the mount's control socket) is bound over /proc/kallsyms,
which `trace-cmd record` copies into trace.dat.  If a bind fails, trace-cmd does not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from emu import native

from ..errors import FtraceError
from . import procsys
from .control import request

PRELOAD_SOURCE = Path(__file__).resolve().parent / "preload" / "settracingdir.c"
FTRACE_ENABLED = "/proc/sys/kernel/ftrace_enabled"
KALLSYMS = "/proc/kallsyms"
#: The exit status of the wrapper when the private namespace could not be set up.
SETUP_FAILED = 97

_WRAPPER = """
set -e
if [ -e {sysctl} ]; then
    mount --bind "$FTRACE_EMU_SYSCTL" {sysctl} || exit {failed}
fi
mount --bind "$FTRACE_EMU_KALLSYMS" {kallsyms} || exit {failed}
export LD_PRELOAD="$FTRACE_EMU_PRELOAD${{LD_PRELOAD:+:$LD_PRELOAD}}"
exec trace-cmd "$@"
"""


def require_trace_cmd() -> str:
    path = shutil.which("trace-cmd")
    if path is None:
        raise FtraceError("trace-cmd is not installed (apt-get install trace-cmd)")
    if shutil.which("unshare") is None:
        raise FtraceError("unshare is needed for trace-cmd's private mount namespace (apt-get install util-linux)")
    return path


def run_trace_cmd(mountpoint: str | Path, args: list[str], capture: bool = False) -> subprocess.CompletedProcess:
    """trace-cmd ARGS against the tracefs mounted at mountpoint; its exit status and, with
    capture, its output."""
    require_trace_cmd()
    if not os.path.ismount(mountpoint):
        raise FtraceError(f"{mountpoint}: no tracefs mounted there (ftrace-emu mount {mountpoint})")
    if subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True).returncode:
        raise FtraceError("trace-cmd runs in a private mount namespace, and this user cannot make one "
                          "(run as root); trace-cmd was not run")
    preload = native.build(PRELOAD_SOURCE)
    answer = request(mountpoint, {"op": "kallsyms"})
    if "kallsyms" not in answer:
        raise FtraceError(f"{mountpoint}: the mount did not give its kallsyms: {answer.get('error', answer)}")
    with procsys.mounted(mountpoint) as sysdir, tempfile.NamedTemporaryFile("w", prefix="ftrace-emu-kallsyms-") as ks:
        ks.write(answer["kallsyms"])
        ks.flush()
        sysctl = sysdir / "kernel" / "ftrace_enabled"
        env = dict(os.environ, FTRACE_EMU_TRACING_DIR=str(Path(mountpoint).resolve()),
                   FTRACE_EMU_PRELOAD=str(preload), FTRACE_EMU_SYSCTL=str(sysctl), FTRACE_EMU_KALLSYMS=ks.name)
        wrapper = _WRAPPER.format(sysctl=FTRACE_ENABLED, kallsyms=KALLSYMS, failed=SETUP_FAILED)
        done = subprocess.run(["unshare", "-m", "--propagation", "private", "--", "sh", "-c", wrapper,
                               "trace-cmd", *args], env=env, capture_output=capture, text=True)
    if done.returncode == SETUP_FAILED:
        raise FtraceError(f"could not bind the emulated kernel.ftrace_enabled over {FTRACE_ENABLED} or its "
                          f"kallsyms over {KALLSYMS}; trace-cmd was not run")
    return done
