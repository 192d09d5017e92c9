"""One tracing session, as `ftrace-emu trace` runs it: boot, load modules, set filters, pick
the tracer, run guest functions, and render the trace in the format asked for."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from emu.cpu import Task
from emu.errors import GuestFault

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
FORMATS = ("text", "json", "chrome")


@dataclass
class Call:
    symbol: str
    args: tuple[int, ...]
    result: int | None = None

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

    def run(self) -> System:
        if self.tracer not in ("function", "function_graph"):
            raise FtraceError(f"--tracer {self.tracer!r}: expected function or function_graph")
        if self.recorder not in RECORDERS:
            raise FtraceError(f"--recorder {self.recorder!r}: expected one of {', '.join(RECORDERS)}")
        system = boot(self.variant, recorder=self.recorder)
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
            try:
                call.result = system.call(call.symbol, *call.args, cpu=self.cpu)
            except GuestFault as fault:
                self.fault = fault  # the trace up to the fault is what a developer wants most
                break
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
    raise FtraceError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
