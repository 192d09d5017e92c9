"""The ftrace core's error tree: everything it raises derives from FtraceError."""

from __future__ import annotations

import errno as _errno


class FtraceError(Exception):
    """Base of the ftrace core's errors; errno is the kernel's (positive) error code."""

    def __init__(self, message: str, errno: int = _errno.EINVAL):
        super().__init__(message)
        self.errno = errno

    @property
    def errname(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))


class FtraceDead(FtraceError):
    """ftrace has been disabled by ftrace_bug(); the operation gives -ENODEV."""

    def __init__(self, what: str):
        super().__init__(f"{what}: ftrace is disabled after a bug (see dmesg); reboot to use it again", _errno.ENODEV)


class TracefsError(FtraceError):
    """A tracefs read or write failed the way the kernel's would (errno says how)."""
