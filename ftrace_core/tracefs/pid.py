"""The set_ftrace_pid file: ftrace_pid_open(), ftrace_pid_write(), fpid_show() (kernel/trace/
ftrace.c, v4.5 and v4.8.17); what the pids do is ftrace_core.pid's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generator

from ..pid import PidFilter
from .regex import O_TRUNC

if TYPE_CHECKING:
    from . import Tracefs
    from .array import TraceArray

NAME = "set_ftrace_pid"


class PidHandle:
    """An open set_ftrace_pid: reads are a seq_file under ftrace_lock (fpid_start takes it),
    the same for every read of this open; each write goes to the tree's ftrace_pid_write()."""

    def __init__(self, pids: PidFilter):
        self.pids = pids
        self._text: str | None = None

    def read_steps(self) -> Generator[object, None, str]:
        if self._text is None:
            lock = self.pids.ftrace.ftrace_lock
            yield from lock.acquire()
            try:
                self._text = self.pids.read()
            finally:
                lock.release()
        return self._text

    def write_steps(self, data: bytes) -> Generator[object, None, int]:
        return (yield from self.pids.write_steps(data))

    def release_steps(self) -> Generator[object, None, None]:
        yield from ()


def install(tracefs: "Tracefs | TraceArray", pids: PidFilter) -> None:
    """Add set_ftrace_pid to the tree, or to a trace array (0644 in both trees:
    ftrace_init_tracefs())."""

    def opener(name: str, flags: int) -> Generator[object, None, object]:
        # ftrace_pid_open(): opening for writing with O_TRUNC empties the list first.
        if (flags & 3) and flags & O_TRUNC:
            yield from pids.reset_steps()
        return PidHandle(pids)

    tracefs.add(NAME, pids.read, opener=opener, lock="ftrace_lock", mode=0o644)
