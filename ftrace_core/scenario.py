"""Scenarios: what each CPU does, in a small shell-like language, and running one on a
booted system under a schedule.

    # comment
    task 0 bash 1042                    the task (comm, pid) each CPU runs as
    cpu 0: echo function > current_tracer
    cpu 0: echo 'vfs_*' >> set_ftrace_filter
    cpu 0: cat enabled_functions
    cpu 1: insmod race_mod.ko           a path, relative to the scenario file, or a shipped module
    cpu 1: rmmod race_mod
    cpu 1: call race_mod_work 3         a guest function with integer arguments
    cpu 0: echo 0 > /proc/sys/kernel/ftrace_enabled    a sysctl (cat /proc/sys/... reads one)
    cmdline: ftrace=function ftrace_filter=vfs_*       the kernel command line to boot with
    schedule: 1@ftrace_module_init 0    the default schedule (see emu.schedule)
    explore: granularity=fine max-preemptions=2    defaults for `ftrace-emu explore`

Each CPU runs its commands in order, as one task; a command that fails is reported like a
shell would and the next one runs.  Built-in scenarios (`race`) are files in ./scenarios.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generator

import guest
from emu.cpu import Task
from emu.kernel import CALL_BUDGET
from emu.errors import EmuError, GuestFault, ModuleInitFault
from emu.sched import Point
from emu.sched import Deadlock
from emu.schedule import Schedule, ScheduleError, Scheduler, check_label

from .cmdline import CmdlineError, parse_cmdline
from .errors import FtraceError
from .invariants import CallAudit, check
from .timeline import Timeline
from .tracefs import READABLE_FILES, WRITABLE_FILES

BUILTIN_DIR = Path(__file__).resolve().parent / "scenarios"
PROC_SYS = "/proc/sys/"
DEFAULT_TASKS = {0: ("bash", 1042), 1: ("insmod", 2001)}
NR_CPUS = 2


class ScenarioError(FtraceError):
    """A scenario file that cannot be used: `file:line: what is wrong`."""


@dataclass(frozen=True)
class Command:
    cpu: int
    line: int
    text: str
    kind: str  # echo, cat, insmod, rmmod, call, sysctl (args: name, value or None for a read)
    args: tuple


@dataclass
class Scenario:
    path: str
    commands: dict[int, list[Command]] = field(default_factory=dict)
    tasks: dict[int, tuple[str, int]] = field(default_factory=lambda: dict(DEFAULT_TASKS))
    schedule: str | None = None
    #: `explore: granularity=fine max-preemptions=2`: what `ftrace-emu explore` uses by default.
    explore: dict[str, str] = field(default_factory=dict)
    #: `cmdline: ...`: the kernel command line the scenario's system boots with (None: the default).
    cmdline: str | None = None

    @property
    def quantum(self) -> int:
        """The schedule's q=N, else the default slice length."""
        return Schedule.parse(self.schedule or "rr", NR_CPUS).quantum


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.scn"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a scenario file."""
    text_name = str(name_or_path)
    builtin = BUILTIN_DIR / f"{text_name}.scn"
    path = builtin if builtin.is_file() and "/" not in text_name else Path(name_or_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario ({exc.strerror}); built-in scenarios: "
                            f"{', '.join(builtin_names())}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data[:exc.start].count(b"\n") + 1
        raise ScenarioError(f"{path}:{lineno}: not UTF-8 text (byte {data[exc.start]:#04x})") from None
    return parse_scenario(text, str(path))


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    scn = Scenario(path)
    base = Path(path).resolve().parent
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def fail(msg: str) -> ScenarioError:
            return ScenarioError(f"{path}:{lineno}: {msg}")

        if line.startswith("schedule:"):
            sched = line.split(":", 1)[1].strip()
            try:
                Schedule.parse(sched, NR_CPUS, check_label)
            except ScheduleError as exc:
                raise fail(str(exc)) from None
            scn.schedule = sched
            continue
        if line.startswith("explore:"):
            for item in line.split(":", 1)[1].split():
                key, sep, value = item.partition("=")
                if not sep or key not in ("granularity", "max-preemptions"):
                    raise fail(f"explore: expected granularity=... or max-preemptions=..., got {item!r}")
                if key == "max-preemptions" and not value.isdigit():
                    raise fail(f"explore: max-preemptions must be a number, got {value!r}")
                if key == "granularity" and value not in ("coarse", "record", "fine"):
                    raise fail(f"explore: granularity must be coarse, record or fine, got {value!r}")
                scn.explore[key] = value
            continue
        if line.startswith("cmdline:"):
            scn.cmdline = line.split(":", 1)[1].strip()
            try:
                parse_cmdline(scn.cmdline)
            except CmdlineError as exc:
                raise fail(str(exc)) from None
            continue
        if line.startswith("task "):
            parts = line.split()
            if len(parts) != 4 or not parts[1].isdigit() or not parts[3].isdigit():
                raise fail(f"expected 'task CPU COMM PID', got {line!r}")
            cpu = _cpu(parts[1], fail)
            scn.tasks[cpu] = (parts[2][:15], int(parts[3]))
            continue
        if not line.startswith("cpu "):
            raise fail(f"expected 'cpu N: COMMAND', 'task CPU COMM PID', 'schedule: ...' or 'cmdline: ...', "
                       f"got {line!r}")
        head, sep, command = line.partition(":")
        if not sep or not command.strip():
            raise fail(f"expected 'cpu N: COMMAND', got {line!r}")
        cpu = _cpu(head[4:].strip(), fail)
        scn.commands.setdefault(cpu, []).append(_parse_command(cpu, lineno, command.strip(), base, fail))
    if not scn.commands:
        raise ScenarioError(f"{path}: no commands (lines like 'cpu 0: echo function > current_tracer')")
    return scn


def _cpu(text: str, fail) -> int:
    if not text.isdigit() or int(text) >= NR_CPUS:
        raise fail(f"no CPU {text!r}: CPUs are 0-{NR_CPUS - 1}")
    return int(text)


def _sysctl_name(path: str, text: str, fail) -> str:
    """/proc/sys/kernel/ftrace_enabled -> kernel.ftrace_enabled (which names exist, the booted
    system's table says when the command runs)."""
    name = path[len(PROC_SYS):].strip("/")
    if not name or any(not part for part in name.split("/")) or "." in name:
        raise fail(f"{text!r}: {path!r} is not a sysctl path (e.g. /proc/sys/kernel/ftrace_enabled)")
    return name.replace("/", ".")


def _tracefs_name(path: str) -> str:
    """A file's name in the top-level trace array: an instance's instances/NAME/FILE is
    checked as FILE (whether the instance exists is known only when the line runs)."""
    parts = path.split("/", 2)
    return parts[2] if len(parts) == 3 and parts[0] == "instances" and parts[1] else path


def _parse_command(cpu: int, lineno: int, text: str, base: Path, fail) -> Command:
    try:
        argv = shlex.split(text, comments=True)
    except ValueError as exc:
        raise fail(f"{text!r}: {exc}") from None
    verb, rest = argv[0], argv[1:]
    if verb == "echo":
        for redirect in (">>", ">"):
            if redirect in rest:
                i = rest.index(redirect)
                if i != len(rest) - 2:
                    raise fail(f"{text!r}: expected 'echo VALUE {redirect} FILE'")
                file = rest[-1]
                if file.startswith(PROC_SYS):  # a sysctl: `>>` writes it as `>` does
                    return Command(cpu, lineno, text, "sysctl",
                                   (_sysctl_name(file, text, fail), " ".join(rest[:i]) + "\n"))
                if _tracefs_name(file) not in WRITABLE_FILES:
                    raise fail(f"{file!r} is not a writable tracefs file (ls lists them)")
                return Command(cpu, lineno, text, "echo", (" ".join(rest[:i]), file, redirect == ">>"))
        raise fail(f"{text!r}: echo needs '> FILE' or '>> FILE'")
    if verb == "cat" and len(rest) == 1 and rest[0].startswith(PROC_SYS):
        return Command(cpu, lineno, text, "sysctl", (_sysctl_name(rest[0], text, fail), None))
    if verb == "cat":
        if not rest:
            raise fail(f"{text!r}: expected 'cat FILE...'")
        for file in rest:
            if _tracefs_name(file) not in READABLE_FILES:
                raise fail(f"{file!r} is not a tracefs file (ls lists them)")
        return Command(cpu, lineno, text, "cat", tuple(rest))
    if verb == "insmod":
        if len(rest) != 1:
            raise fail(f"{text!r}: expected 'insmod PATH'")
        path = (base / rest[0]) if (base / rest[0]).is_file() else guest.module_path(rest[0])
        if not path.is_file():
            raise fail(f"insmod: {rest[0]}: no such module file (looked beside the scenario and in the guest modules)")
        return Command(cpu, lineno, text, "insmod", (str(path),))
    if verb == "rmmod":
        if len(rest) != 1:
            raise fail(f"{text!r}: expected 'rmmod NAME'")
        return Command(cpu, lineno, text, "rmmod", (rest[0].removesuffix(".ko"),))
    if verb == "call":
        if not rest:
            raise fail(f"{text!r}: expected 'call SYMBOL ARGS...'")
        try:
            args = tuple(int(a, 0) for a in rest[1:])
        except ValueError:
            raise fail(f"{text!r}: arguments must be integers") from None
        if len(args) > 6:
            raise fail(f"{text!r}: at most 6 integer arguments")
        return Command(cpu, lineno, text, "call", (rest[0], *args))
    raise fail(f"unknown command {verb!r} (commands: echo, cat, insmod, rmmod, call)")


@dataclass
class CommandResult:
    cpu: int
    command: str
    output: str = ""
    error: str | None = None
    oops: bool = False  # the error was a guest fault
    stuck: bool = False  # the CPU never got to finish its commands

    def to_json(self) -> dict:
        return {"cpu": self.cpu, "command": self.command, "output": self.output, "error": self.error,
                "oops": self.oops}


@dataclass
class RunResult:
    variant: str
    schedule: str
    ftrace_disabled: bool
    bug: str | None
    killed_by: str | None
    faulting_ip: str | None
    traced_module_functions: list[str]
    invariants: dict[str, bool]
    violations: dict[str, list[str]]
    commands: list[CommandResult]
    #: Segments of the requested schedule the run could not follow (empty: followed).
    unfollowed: list[str]
    trace: str
    dmesg: str
    timeline: Timeline

    @property
    def ok(self) -> bool:
        """Every invariant held, on the schedule asked for."""
        return all(self.invariants.values()) and not self.unfollowed

    def to_json(self) -> dict:
        return {
            "variant": self.variant,
            "schedule": self.schedule,
            "ftrace_disabled": self.ftrace_disabled,
            "bug": self.bug,
            "killed_by": self.killed_by,
            "faulting_ip": self.faulting_ip,
            "traced_module_functions": self.traced_module_functions,
            "invariants": self.invariants,
            "violations": self.violations,
            "schedule_followed": not self.unfollowed,
            "unfollowed": self.unfollowed,
            "commands": [c.to_json() for c in self.commands],
            "timeline": self.timeline.to_json(),
        }


def boot_for(scenario: Scenario, variant: str = "fixed", patching: str = "breakpoints"):
    """The system run_scenario() boots for a scenario: its command line, a point per
    call-site rewrite (for schedules to use), the patching asked for."""
    from .system import boot

    system = boot(variant, cmdline=scenario.cmdline)
    system.ftrace.record_points = True
    system.ftrace.patching = patching
    return system


def run_scenario(scenario: Scenario, variant: str = "fixed", schedule: str | None = None,
                 quantum: int | None = None, system=None, patching: str = "breakpoints") -> RunResult:
    """Boot (unless given a system; with the scenario's command line), run every CPU's
    commands under the schedule (the argument, else the scenario's, else round-robin),
    check the invariants.  patching
    "naive" replaces the breakpoint protocol with byte-by-byte rewriting."""
    sched = Schedule.parse(schedule if schedule is not None else (scenario.schedule or "rr"), NR_CPUS, check_label)
    if quantum is not None:
        sched.quantum = quantum
    if system is None:
        system = boot_for(scenario, variant, patching)
    audit = CallAudit(system)
    audit.install()
    results: list[CommandResult] = []
    scheduler = scheduler_for(system, scenario, results, sched.quantum)
    kernel = system.kernel
    timeline = Timeline(system, NR_CPUS)
    timeline.attach(scheduler)
    try:
        ran = scheduler.run(sched)
    except Deadlock as exc:  # e.g. a task that died in a BUG() while holding a lock
        ran = scheduler.schedule_string(sched.quantum)
        for cpu, task in scheduler.tasks.items():
            if not task.done:
                results.append(CommandResult(cpu, "(unfinished)", error=f"deadlock: {exc}", stuck=True))
    finally:
        timeline.detach()
        kernel.current_cpu = 0
    invariants, violations = check(system, audit, results)
    ftrace = system.ftrace
    env = system.env
    module_funcs = sorted({env.name_ip(e.ip).split(" [")[0] for e in system.buffer.entries()
                           if kernel.kallsyms.lookup(e.ip) and kernel.kallsyms.lookup(e.ip)[0].module})
    return RunResult(
        variant=system.variant,
        schedule=ran,
        ftrace_disabled=ftrace.ftrace_disabled,
        bug=ftrace.bug_report,
        killed_by=ftrace.killed_by,
        faulting_ip=env.format_ip(ftrace.bug_ip) if ftrace.bug_ip is not None else None,
        traced_module_functions=module_funcs,
        invariants=invariants,
        violations=violations,
        commands=sorted(results, key=lambda r: (r.cpu,)),
        unfollowed=list(scheduler.unfollowed),
        trace=system.tracefs.read("trace"),
        dmesg=system.dmesg(),
        timeline=timeline,
    )


def scheduler_for(system, scenario: Scenario, results: list[CommandResult], quantum: int) -> Scheduler:
    """One task per CPU running its commands (their results go to `results`), in a scheduler
    that tells the kernel which CPU host code runs on."""
    tasks = {cpu: _cpu_task(system, cpu, scenario, cmds, results, quantum)
             for cpu, cmds in sorted(scenario.commands.items())}
    return Scheduler(tasks, on_switch=lambda cpu: setattr(system.kernel, "current_cpu", cpu))


def _cpu_task(system, cpu: int, scenario: Scenario, commands: list[Command], results: list[CommandResult],
              quantum: int) -> Generator[object, None, None]:
    comm, pid = scenario.tasks.get(cpu, DEFAULT_TASKS.get(cpu, ("bash", 1000 + cpu)))
    kernel = system.kernel
    kernel.cpus[cpu].set_task(Task(comm, pid))
    for cmd in commands:
        yield Point("command", cmd.text)
        result = CommandResult(cpu, cmd.text)
        results.append(result)
        try:
            result.output = yield from _execute(system, cmd, quantum)
        except GuestFault as exc:
            for line in exc.report.splitlines():
                kernel.printk(line + "\n", cpu)
            result.error = next(line for line in exc.report.splitlines() if not line.startswith("---"))
            result.oops = True
        except (FtraceError, EmuError) as exc:
            result.error = f"{cmd.kind}: {exc}"
            result.oops = isinstance(exc, ModuleInitFault)


def _execute(system, cmd: Command, quantum: int) -> Generator[object, None, str]:
    kernel = system.kernel
    cpu = kernel.cpus[cmd.cpu]
    if cmd.kind == "echo":
        value, file, append = cmd.args
        yield from system.tracefs.write_steps(file, value, append)
        return ""
    if cmd.kind == "cat":  # each file in turn, as cat(1) does
        texts = []
        for file in cmd.args:
            texts.append((yield from system.tracefs.read_steps(file)))
        return "".join(texts)
    if cmd.kind == "sysctl":
        name, value = cmd.args
        if value is None:
            return system.sysctls.read(name)
        yield from system.sysctls.write_steps(name, value)
        return ""
    if cmd.kind == "insmod":
        path = cmd.args[0]
        mod = yield from kernel.modules.load_module(cpu, Path(path).read_bytes(), path, quantum)
        return mod.name
    if cmd.kind == "rmmod":
        yield from kernel.modules.delete_module(cpu, cmd.args[0], quantum)
        return ""
    symbol, *args = cmd.args
    addr = kernel.check_call(symbol, tuple(args))
    ret = yield from cpu.call(addr, *args, quantum=quantum, budget=CALL_BUDGET)
    return str(ret)
