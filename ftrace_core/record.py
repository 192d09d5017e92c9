"""One tracing session, as `ftrace-emu trace` runs it: boot, load modules, set filters, pick
the tracer, run guest functions, and render the trace in the format asked for."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from emu.cpu import Task
from emu.errors import GuestFault
from emu.kernel import CALL_BUDGET

from .errors import FtraceError
from .output import format_chrome, format_json_lines
from .system import System, boot
from .tracer import RECORDERS

#: Named workloads: a guest function and its arguments.
WORKLOADS: dict[str, tuple[str, tuple[int, ...]]] = {
    "syscalls": ("workload_run", (3,)),
    "getpid": ("workload_getpid", ()),
    "fs": ("workload_fs_roundtrip", (256,)),
}
FORMATS = ("text", "json", "chrome", "dat")  # dat: trace.dat, written by System.write_tracedat()


class CallProgress:
    """A line on a terminal telling how far a long guest call has got: the call is paused
    every few million instructions (emu.cpu.PROGRESS_INSNS) to update it, shown once the
    call has run half a second, and erased when the call ends."""

    DELAY_S = 0.5
    EVERY_S = 0.2

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.shown = False

    def for_call(self, what: str) -> Callable[[int], None]:
        started = time.monotonic()
        last = [started]

        def tick(insns: int) -> None:
            now = time.monotonic()
            if now - started < self.DELAY_S or now - last[0] < self.EVERY_S:
                return
            last[0] = now
            self.stream.write(f"\r\033[K{what}: {insns / 1e6:,.0f}M instructions run "
                              f"({insns / 1e9:.3f} s of guest time, {now - started:.0f} s here)...")
            self.stream.flush()
            self.shown = True
        return tick

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def call_progress(stream: TextIO | None = None) -> CallProgress | None:
    """A progress display for long calls when stream (stderr) is a terminal, else None."""
    stream = stream or sys.stderr
    return CallProgress(stream) if stream.isatty() else None


@dataclass
class Call:
    symbol: str
    args: tuple[int, ...]
    result: int | None = None

    @property
    def text(self) -> str:
        return " ".join((self.symbol, *map(str, self.args)))

    @classmethod
    def parse(cls, text: str) -> "Call":
        words = shlex.split(text)
        if not words:
            raise FtraceError("--run: empty call; expected 'SYMBOL ARGS...'")
        try:
            return cls(words[0], tuple(int(w, 0) for w in words[1:]))
        except ValueError:
            raise FtraceError(f"--run {text!r}: arguments must be integers") from None


@dataclass
class Session:
    variant: str = "fixed"
    modules: list[str] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    notrace: list[str] = field(default_factory=list)
    tracer: str = "function"
    calls: list[Call] = field(default_factory=list)
    cpu: int = 0
    task: tuple[str, int] = ("bash", 1042)
    recorder: str = "hook"
    #: The oops that stopped the calls, if one did: the trace up to it is kept.
    fault: GuestFault | None = None
    #: Instructions a call may run before it is a soft lockup (None: no limit).
    budget: int | None = CALL_BUDGET
    progress: CallProgress | None = None
    #: The kernel command line to boot with (None: the default); its tracing options apply
    #: at boot, before the session's own filters and tracer.
    cmdline: str | None = None

    def run(self) -> System:
        if self.tracer not in ("function", "function_graph"):
            raise FtraceError(f"--tracer {self.tracer!r}: expected function or function_graph")
        if self.recorder not in RECORDERS:
            raise FtraceError(f"--recorder {self.recorder!r}: expected one of {', '.join(RECORDERS)}")
        system = boot(self.variant, recorder=self.recorder, cmdline=self.cmdline)
        system.cpus[self.cpu].set_task(Task(*self.task))
        fs = system.tracefs
        # As a user would by hand: switch tracing on first, so the modules' own init is
        # traced, unless a filter names what only a loaded module has (a 4.x kernel keeps no
        # filter for a module not loaded yet); then load first.
        early = not self.modules or self._filters_apply_before_loading(system)
        if not early:
            for path in self.modules:
                system.insmod(path, cpu=self.cpu)
        self._set_filters(fs)
        fs.write("current_tracer", self.tracer)
        if early:
            for path in self.modules:
                system.insmod(path, cpu=self.cpu)
        for call in self.calls:
            tick = self.progress.for_call(call.text) if self.progress is not None else None
            try:
                call.result = system.call(call.symbol, *call.args, cpu=self.cpu, budget=self.budget, progress=tick)
            except GuestFault as fault:
                self.fault = fault  # the trace up to the fault is what a developer wants most
                break
            finally:
                if self.progress is not None:
                    self.progress.done()
        return system


    def _set_filters(self, fs) -> None:
        if self.filters:
            fs.write("set_ftrace_filter", " ".join(self.filters))
        if self.notrace:
            fs.write("set_ftrace_notrace", " ".join(self.notrace))

    def _filters_apply_before_loading(self, system: System) -> bool:
        """Does every filter and notrace token match something before any module loads?"""
        from .tracefs.regex import selected_by

        return all(selected_by(system, token) is not None for token in (*self.filters, *self.notrace))


def render(system: System, fmt: str) -> str:
    if fmt == "text":
        return system.tracefs.read("trace")
    entries = system.buffer.entries()
    if fmt == "json":
        return format_json_lines(entries, system.describe, system.buffer.overrun)
    if fmt == "chrome":
        return format_chrome(entries, system.describe, len(system.cpus))
    if fmt == "dat":
        raise FtraceError("--format dat is a binary file: System.write_tracedat(path) writes it")
    raise FtraceError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
