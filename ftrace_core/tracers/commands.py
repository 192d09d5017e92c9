"""The probe commands of set_ftrace_filter: traceon, traceoff, stacktrace, dump and cpudump
(kernel/trace/trace_functions.c) and snapshot (kernel/trace/trace.c), each a struct
ftrace_func_command whose callback registers a function probe (ftrace_core.probe).  The same
in v4.5 and v4.8.17.

`func:cmd[:count]` adds a probe on every function the glob matches (no function matched is
no error); `!func:cmd[:count]` removes those of that command, the counted kind if a count
is given, the plain kind if not.  A command written to set_ftrace_notrace is -EINVAL.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Generator

from .dump import DumpMode, ftrace_dump
from ..hash import FtraceHash
from ..kstr import kstrtoul_base0
from ..probe import FtraceProbes, FuncProbe, ProbeOps
from .stacktrace import trace_dump_stack

if TYPE_CHECKING:
    from ..system import System

#: A command's callback, as ftrace_process_regex() calls it: (hash, glob, cmd, param or None,
#: enable) -> 0 or -errno.
Command = Callable[[FtraceHash, str, str, "str | None", bool], Generator[object, None, int]]
UNLIMITED = -1


def _probe_print(name: str) -> Callable[[str, int], str]:
    """ftrace_probe_print() (and ftrace_snapshot_print()): "func:cmd:count=N" or ":unlimited"."""
    def show(func: str, count: int) -> str:
        return f"{func}:{name}" + (":unlimited\n" if count == UNLIMITED else f":count={count}\n")
    return show


class FunctionCommands:
    """The probe ops of trace_functions.c and trace.c, and their commands."""

    def __init__(self, system: "System", probes: FtraceProbes):
        self.system = system
        self.probes = probes
        on, off = self.update_traceon_count, self.ftrace_traceoff
        self.traceon_probe_ops = ProbeOps("traceon", self.ftrace_traceon, _probe_print("traceon"))
        self.traceoff_probe_ops = ProbeOps("traceoff", off, _probe_print("traceoff"))
        self.traceon_count_probe_ops = ProbeOps("traceon", lambda ip, p, pr, cpu: on(pr, True),
                                                _probe_print("traceon"))
        self.traceoff_count_probe_ops = ProbeOps("traceoff", lambda ip, p, pr, cpu: on(pr, False),
                                                 _probe_print("traceoff"))
        self.stacktrace_probe_ops = ProbeOps("stacktrace", lambda ip, p, pr, cpu: trace_dump_stack(system, cpu),
                                             _probe_print("stacktrace"))
        self.stacktrace_count_probe_ops = ProbeOps("stacktrace", self.ftrace_stacktrace_count,
                                                   _probe_print("stacktrace"))
        self.dump_probe_ops = ProbeOps("dump", self.ftrace_dump_probe, _probe_print("dump"))
        self.cpudump_probe_ops = ProbeOps("cpudump", self.ftrace_cpudump_probe, _probe_print("cpudump"))
        self.snapshot_probe_ops = ProbeOps("snapshot", self.ftrace_snapshot, _probe_print("snapshot"))
        self.snapshot_count_probe_ops = ProbeOps("snapshot", self.ftrace_count_snapshot, _probe_print("snapshot"))
        # init_func_cmd_traceon() and register_snapshot_cmd()
        self.commands: dict[str, Command] = {
            "traceoff": self.ftrace_trace_onoff_callback, "traceon": self.ftrace_trace_onoff_callback,
            "stacktrace": self.ftrace_stacktrace_callback, "dump": self.ftrace_dump_callback,
            "cpudump": self.ftrace_cpudump_callback, "snapshot": self.ftrace_trace_snapshot_callback,
        }

    # -- what the probes do --------------------------------------------------------------------
    def tracing_is_on(self) -> bool:
        return self.system.tracer.tracing_on

    def ftrace_traceon(self, ip: int, parent_ip: int, probe: FuncProbe, cpu) -> None:
        """ftrace_traceon()."""
        if not self.tracing_is_on():
            self.system.set_tracing_on(True)

    def ftrace_traceoff(self, ip: int, parent_ip: int, probe: FuncProbe, cpu) -> None:
        """ftrace_traceoff()."""
        if self.tracing_is_on():
            self.system.set_tracing_on(False)

    def update_traceon_count(self, probe: FuncProbe, on: bool) -> None:
        """update_traceon_count(): switch the ring buffer and count it down, but only when
        it was in the other state (a hit that changes nothing costs nothing)."""
        old = probe.data
        if not old or on == self.tracing_is_on():
            return
        self.system.set_tracing_on(on)
        if old != UNLIMITED:
            probe.data = old - 1

    def ftrace_stacktrace_count(self, ip: int, parent_ip: int, probe: FuncProbe, cpu) -> None:
        """ftrace_stacktrace_count(): only while tracing is on, and only count times."""
        if not self.tracing_is_on() or not probe.data:
            return
        if probe.data != UNLIMITED:
            probe.data -= 1
        trace_dump_stack(self.system, cpu)

    @staticmethod
    def update_count(probe: FuncProbe) -> bool:
        """update_count(): whether to act, counting down."""
        if not probe.data:
            return False
        if probe.data != UNLIMITED:
            probe.data -= 1
        return True

    def ftrace_dump_probe(self, ip: int, parent_ip: int, probe: FuncProbe, cpu) -> None:
        if self.update_count(probe):
            ftrace_dump(self.system, DumpMode.DUMP_ALL, cpu)

    def ftrace_cpudump_probe(self, ip: int, parent_ip: int, probe: FuncProbe, cpu) -> None:
        """ftrace_cpudump_probe(): only the buffer of the CPU that hit the function."""
        if self.update_count(probe):
            ftrace_dump(self.system, DumpMode.DUMP_ORIG, cpu)

    def _snapshot(self):
        """The trace array's snapshot buffer (CONFIG_TRACER_SNAPSHOT): alloc_snapshot() -> 0
        or -errno, and tracing_snapshot(cpu)."""
        return self.system.tracefs.buffers

    def ftrace_snapshot(self, ip: int, parent_ip: int, probe: FuncProbe, cpu) -> None:
        self._snapshot().tracing_snapshot(cpu)

    def ftrace_count_snapshot(self, ip: int, parent_ip: int, probe: FuncProbe, cpu) -> None:
        if self.update_count(probe):
            self._snapshot().tracing_snapshot(cpu)

    # -- the commands ----------------------------------------------------------------------------
    def ftrace_trace_probe_callback(self, ops: ProbeOps, glob: str, param: str | None, enable: bool
                                    ) -> Generator[object, None, int]:
        """ftrace_trace_probe_callback(): '!' unregisters; else the count (kstrtoul base 0,
        "unlimited" when absent or empty) and register_ftrace_function_probe()."""
        if not enable:  # "hash funcs only work with set_ftrace_filter"
            return -errno.EINVAL
        if glob.startswith("!"):
            yield from self.probes.unregister_ftrace_function_probe_func(glob[1:], ops)
            return 0
        count = UNLIMITED
        number = param.split(":", 1)[0] if param is not None else ""
        if number:
            value, err = kstrtoul_base0(number)
            if err:
                return err
            count = value - (1 << 64) if value >> 63 else value  # the pointer printed with %ld
        ret = yield from self.probes.register_ftrace_function_probe(glob, ops, count)
        return ret if ret < 0 else 0

    def ftrace_trace_onoff_callback(self, hash_: FtraceHash, glob: str, cmd: str, param: str | None,
                                    enable: bool) -> Generator[object, None, int]:
        if cmd == "traceon":
            ops = self.traceon_count_probe_ops if param is not None else self.traceon_probe_ops
        else:
            ops = self.traceoff_count_probe_ops if param is not None else self.traceoff_probe_ops
        return (yield from self.ftrace_trace_probe_callback(ops, glob, param, enable))

    def ftrace_stacktrace_callback(self, hash_: FtraceHash, glob: str, cmd: str, param: str | None,
                                   enable: bool) -> Generator[object, None, int]:
        ops = self.stacktrace_count_probe_ops if param is not None else self.stacktrace_probe_ops
        return (yield from self.ftrace_trace_probe_callback(ops, glob, param, enable))

    def ftrace_dump_callback(self, hash_: FtraceHash, glob: str, cmd: str, param: str | None,
                             enable: bool) -> Generator[object, None, int]:
        """ftrace_dump_callback(): "Only dump once" (the count is always 1)."""
        return (yield from self.ftrace_trace_probe_callback(self.dump_probe_ops, glob, "1", enable))

    def ftrace_cpudump_callback(self, hash_: FtraceHash, glob: str, cmd: str, param: str | None,
                                enable: bool) -> Generator[object, None, int]:
        return (yield from self.ftrace_trace_probe_callback(self.cpudump_probe_ops, glob, "1", enable))

    def ftrace_trace_snapshot_callback(self, hash_: FtraceHash, glob: str, cmd: str, param: str | None,
                                       enable: bool) -> Generator[object, None, int]:
        """ftrace_trace_snapshot_callback() (trace.c): as the others, and a registered probe
        allocates the snapshot buffer.  A kernel without CONFIG_TRACER_SNAPSHOT has no such
        command: -EINVAL, as for any unknown command."""
        snapshot = self._snapshot()
        if snapshot is None:
            return -errno.EINVAL
        ops = self.snapshot_count_probe_ops if param is not None else self.snapshot_probe_ops
        if enable and glob.startswith("!"):
            yield from self.probes.unregister_ftrace_function_probe_func(glob[1:], ops)
            return 0
        ret = yield from self.ftrace_trace_probe_callback(ops, glob, param, enable)
        if ret == 0:
            snapshot.alloc_snapshot()
        return ret


def install(system: "System") -> FunctionCommands:
    """The probes (ftrace_func_hash, trace_probe_ops) and the commands, registered for
    ftrace_process_regex() in system.ftrace_commands."""
    commands = FunctionCommands(system, FtraceProbes(system))
    system.probes = commands.probes
    system.ftrace_commands = dict(commands.commands)
    return commands
