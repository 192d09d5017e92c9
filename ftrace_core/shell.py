"""An interactive tracefs shell over a booted System: `echo function > current_tracer`,
`cat trace`, `insmod`, `call` and friends, one command line at a time."""

from __future__ import annotations

import builtins
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

import guest
from emu.cpu import Task
from emu.errors import EmuError, GuestFault, ModuleLoadError

from .errors import FtraceError
from .record import call_progress
from .scenario import Command, _parse_command

if TYPE_CHECKING:
    from .system import System

PROMPT = "ftrace-emu# "

HELP = """\
echo VALUE... > FILE     write a tracefs file (>> appends); plain `echo TEXT` prints TEXT
cat FILE                 read a tracefs file
echo N > /proc/sys/kernel/NAME, cat /proc/sys/kernel/NAME    a sysctl (ftrace_enabled, ...)
ls                       list the tracefs files
mkdir instances/NAME     make a trace array of its own (rmdir removes it)
insmod PATH              load a module: a .ko file, or a shipped module by name (race_mod)
rmmod NAME               unload a module
call SYMBOL ARGS...      call a guest function with integer arguments, print its return value
dmesg                    print the kernel log
cpu [N]                  run the following commands on CPU N ({cpus}); alone, show the CPU
help                     this list
exit, quit               leave the shell
"""


class ShellError(FtraceError):
    """A command line the shell cannot run as written (syntax, arguments)."""


#: The shell's task on CPU 0 (CPU N runs as SHELL_PID + N).
SHELL_PID = 1042


class Shell:
    """Runs command lines against a System, printing each one's output (or its error, as a
    shell would, on one line) to `out`.  Bad input never raises."""

    def __init__(self, system: "System", cpu: int = 0, out: TextIO | None = None):
        self.system = system
        self.out = out if out is not None else sys.stdout
        self.cpu = self._check_cpu(cpu)
        # What the shell runs, it runs as its own task on each CPU (not the idle tasks).
        for index, c in enumerate(system.cpus):
            c.set_task(Task("sh", SHELL_PID + index))
        self._commands: dict[str, Callable[[list[str]], None]] = {
            "echo": self._echo, "cat": self._tracefs_command, "rmmod": self._rmmod,
            "call": self._call, "insmod": self._insmod, "ls": self._ls, "dmesg": self._dmesg,
            "cpu": self._cpu, "help": self._help, "mkdir": self._mkdir, "rmdir": self._rmdir,
        }

    # -- the interface ----------------------------------------------------------------------
    def execute(self, line: str) -> bool:
        """Run one command line; False when it asks to leave (exit, quit), True otherwise."""
        try:
            argv = shlex.split(line, comments=True)
        except ValueError as exc:
            self._print(f"syntax error: {exc}")
            return True
        if not argv:
            return True
        verb = argv[0]
        if verb in ("exit", "quit"):
            return False
        handler = self._commands.get(verb)
        if handler is None:
            self._print(f"unknown command {verb!r} (try help)")
            return True
        try:
            handler(argv)
        except GuestFault as exc:
            # An oops: the whole report, and into the log as the kernel would put it.
            self._print(exc.report.rstrip("\n"))
            for text in exc.report.splitlines():
                self.system.kernel.printk(text + "\n", self.cpu)
        except ShellError as exc:
            self._print(f"{verb}: {exc}")
        except TracefsWriteError as exc:
            self._print(f"{verb}: write error: {os.strerror(exc.errno)} ({exc.cause})")
        except ModuleLoadError as exc:
            self._print(f"{verb}: ERROR: could not insert module {argv[1]}: {exc}" if verb == "insmod"
                        else f"{verb}: ERROR: {exc}")
        except FtraceError as exc:
            self._print(f"{verb}: {os.strerror(exc.errno)} ({exc})")
        except EmuError as exc:
            self._print(f"{verb}: {exc}")
        return True

    def run(self, input: TextIO | None = None) -> None:
        """Read and execute lines until end of input or exit; prompt (with readline line
        editing and history) only when input is a terminal."""
        input = input if input is not None else sys.stdin
        interactive = _isatty(input)
        use_readline = interactive and input is sys.stdin
        if use_readline:
            try:
                import readline  # noqa: F401  (importing it gives input() editing and history)
            except ImportError:
                pass
        while True:
            try:
                if use_readline:
                    line = builtins.input(PROMPT)
                else:
                    if interactive:
                        self.out.write(PROMPT)
                        self.out.flush()
                    line = input.readline()
                    if not line:
                        break
            except EOFError:
                break
            except KeyboardInterrupt:
                # As a shell: ^C drops the line being typed, not the session.
                self.out.write("\n")
                continue
            if not self.execute(line):
                return
            self.out.flush()
        if interactive:
            self.out.write("\n")  # leave the terminal on a fresh line after ^D

    # -- commands ---------------------------------------------------------------------------
    def _echo(self, argv: list[str]) -> None:
        if ">" not in argv and ">>" not in argv:
            self._print(" ".join(argv[1:]))
            return
        self._tracefs_command(argv)

    def _tracefs_command(self, argv: list[str]) -> None:
        """echo and cat, parsed as scenario files parse them, so a line means the same in both."""
        cmd = self._parse(argv)
        with self.system._on_cpu(self.cpu):
            if cmd.kind == "sysctl":  # /proc/sys/...: the system's sysctls
                name, value = cmd.args
                if value is None:
                    self._write(self.system.sysctls.read(name))
                    return
                try:
                    self.system.sysctls.write(name, value)
                except FtraceError as exc:
                    raise TracefsWriteError(exc) from None
                return
            if cmd.kind == "echo":
                value, file, append = cmd.args
                try:
                    self.system.tracefs.write(file, value, append)
                except FtraceError as exc:
                    raise TracefsWriteError(exc) from None
                return
            for file in cmd.args:  # cat FILE...: each in turn
                self._write(self.system.tracefs.read(file))

    def _rmmod(self, argv: list[str]) -> None:
        cmd = self._parse(argv)
        self.system.rmmod(cmd.args[0], self.cpu)

    def _call(self, argv: list[str]) -> None:
        symbol, *args = self._parse(argv).args
        progress = call_progress()
        try:
            ret = self.system.call(symbol, *args, cpu=self.cpu,
                                   progress=progress.for_call(" ".join(argv[1:])) if progress else None)
        finally:
            if progress is not None:
                progress.done()
        self._print(str(ret))

    def _insmod(self, argv: list[str]) -> None:
        if len(argv) != 2:
            raise ShellError("expected 'insmod PATH'")
        path = Path(argv[1])
        if not path.is_file() and guest.module_path(argv[1]).is_file():
            path = guest.module_path(argv[1])  # a shipped module by name
        if not path.is_file():
            raise ShellError(f"ERROR: could not load module {argv[1]}: No such file or directory")
        self.system.insmod(path, self.cpu)

    def _ls(self, argv: list[str]) -> None:
        self._print("\n".join(self.system.tracefs.files))

    def _mkdir(self, argv: list[str]) -> None:
        if len(argv) != 2:
            raise ShellError("expected 'mkdir instances/NAME'")
        self.system.tracefs.mkdir(argv[1])

    def _rmdir(self, argv: list[str]) -> None:
        if len(argv) != 2:
            raise ShellError("expected 'rmdir instances/NAME'")
        self.system.tracefs.rmdir(argv[1])

    def _dmesg(self, argv: list[str]) -> None:
        self._write(self.system.dmesg())

    def _cpu(self, argv: list[str]) -> None:
        if len(argv) == 1:
            self._print(str(self.cpu))
            return
        if len(argv) != 2:
            raise ShellError("expected 'cpu N'")
        try:
            cpu = int(argv[1], 0)
        except ValueError:
            raise ShellError(f"{argv[1]!r} is not a CPU number") from None
        self.cpu = self._check_cpu(cpu)

    def _help(self, argv: list[str]) -> None:
        self._write(HELP.format(cpus=f"0-{len(self.system.cpus) - 1}"))

    # -- helpers ----------------------------------------------------------------------------
    def _parse(self, argv: list[str]) -> Command:
        def fail(msg: str) -> ShellError:
            return ShellError(msg)

        return _parse_command(self.cpu, 0, shlex.join(argv), Path.cwd(), fail)

    def _check_cpu(self, cpu: int) -> int:
        ncpus = len(self.system.cpus)
        if not 0 <= cpu < ncpus:
            raise ShellError(f"no CPU {cpu}: this machine has CPUs 0-{ncpus - 1}")
        return cpu

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")

    def _write(self, text: str) -> None:
        """A file's or the log's text as is, on whole lines (bytes that are not text, as
        the bin option prints, shown as replacement characters)."""
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        self.out.write(text if not text or text.endswith("\n") else text + "\n")


class TracefsWriteError(FtraceError):
    """A tracefs write that failed: printed as the shell's `write error` line."""

    def __init__(self, cause: FtraceError):
        super().__init__(str(cause), cause.errno)
        self.cause = cause


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
