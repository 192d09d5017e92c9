"""The emulated kernel's sysctls (/proc/sys): a small table of named integer knobs, each with
the handler that acts on a write, as the kernel's ctl_table entries have.

Names are sysctl(8)'s, `kernel.stack_tracer_enabled` (or the path form,
`kernel/stack_tracer_enabled`).  A write goes through `proc_dointvec()` and then the entry's
handler; the shell, the Python API (`System.sysctl` / `System.set_sysctl`) and the mount's
procsys server (ftrace_core.tracefs.procsys) all use this one table.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Callable, Generator

from emu.sched import run_to_completion

from .errors import TracefsError
from .kstr import simple_strtoul

INT_MAX = (1 << 31) - 1
#: proc_wspace_sep (kernel/sysctl.c): what may separate or follow a number.
_WSPACE = " \t\n"


class SysctlError(TracefsError):
    """A /proc/sys read or write failed the way the kernel's would (errno says how)."""


@dataclass(frozen=True)
class SysctlEntry:
    """One ctl_table entry: its mode, what a read shows, and the proc_handler of a write
    (a generator step, given the bytes written)."""

    name: str
    mode: int
    read: Callable[[], str]
    write: Callable[[bytes], Generator[object, None, None]] | None = None


def proc_dointvec(name: str, data: bytes) -> int:
    """__do_proc_dointvec() for a one-int entry (kernel/sysctl.c, v4.5-v4.8): leading blanks
    skipped, an optional '-', a base-0 number that must end at a blank or the end of the
    buffer and fit an int; -EINVAL otherwise, and for a write with no number at all."""
    text = data.decode("latin-1").lstrip(_WSPACE)
    if not text:
        raise SysctlError(f"{name}: no number written", errno.EINVAL)
    neg = text.startswith("-")
    if neg:
        text = text[1:]
    if not text[:1].isdigit():
        raise SysctlError(f"{name}: {data!r} is not a number", errno.EINVAL)
    value, rest = simple_strtoul(text)
    if rest and rest[0] not in _WSPACE:
        raise SysctlError(f"{name}: {data!r} is not a number", errno.EINVAL)
    if value > (INT_MAX + 1 if neg else INT_MAX):
        raise SysctlError(f"{name}: {data!r} does not fit an int", errno.EINVAL)
    return -value if neg else value


def canonical(name: str) -> str:
    """sysctl(8)'s dotted form of a name given dotted or as a path under /proc/sys."""
    return name.strip("/").replace("/", ".")


class SysctlTable:
    """The kernel's sysctls, by dotted name."""

    def __init__(self) -> None:
        self._entries: dict[str, SysctlEntry] = {}

    def add(self, name: str, read: Callable[[], str],
            write: Callable[[bytes], Generator[object, None, None]] | None = None, mode: int = 0o644) -> None:
        self._entries[name] = SysctlEntry(name, mode, read, write)

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> SysctlEntry:
        entry = self._entries.get(canonical(name))
        if entry is None:
            have = ", ".join(self.names) or "none"
            raise SysctlError(f"{name}: no such sysctl (this kernel has: {have})", errno.ENOENT)
        return entry

    def read(self, name: str) -> str:
        """`cat /proc/sys/...`: the entry's text."""
        return self.entry(name).read()

    def write_steps(self, name: str, text: str | bytes) -> Generator[object, None, None]:
        """`echo text > /proc/sys/...`: the entry's proc_handler on the bytes written."""
        entry = self.entry(name)
        if entry.write is None:
            raise SysctlError(f"{name}: read-only sysctl", errno.EACCES)
        data = text.encode() if isinstance(text, str) else text
        yield from entry.write(data)

    def write(self, name: str, text: str | bytes) -> None:
        run_to_completion(self.write_steps(name, text))
