"""The `ftrace-emu` command line: each command parses, calls one library function, renders.

Errors are mapped to one-line messages and exit codes in one place (`main`): 2 for bad input,
1 when the emulated system failed; `--traceback` shows the Python traceback as well.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

import guest
from emu import errors as emu_errors
from ftrace_core.errors import FtraceError
from ftrace_core.system import boot as boot_system

app = typer.Typer(
    help="An emulator-backed live function tracer: Linux's ftrace patching real gcc-built x86-64 code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"traceback": False}

# Errors caused by what the user gave us (exit 2) versus the system failing (exit 1).
_BAD_INPUT = (emu_errors.ElfError, emu_errors.ModuleLoadError, emu_errors.SymbolError, emu_errors.ToolchainError,
              FileNotFoundError, FtraceError)


@app.callback()
def _options(
    traceback: bool = typer.Option(False, "--traceback", help="Show the Python traceback on errors."),
) -> None:
    _state["traceback"] = traceback


@app.command()
def boot(
    image: Optional[Path] = typer.Option(None, "--image", help="Kernel image to boot (default: the shipped one)."),
) -> None:
    """Boot the kernel image and show dmesg, the memory map with each range's protection, and
    how many call sites ftrace manages.

    Example: ftrace-emu boot
    """
    system = boot_system("fixed", image or guest.VMLINUX)
    kernel = system.kernel
    console = Console(highlight=False)
    console.print(kernel.dmesg(), end="", markup=False)
    table = Table(title="memory map", show_edge=False)
    for col in ("start", "end", "prot", "mapping"):
        table.add_column(col)
    for entry in kernel.memory_map():
        table.add_row(f"{entry.start:016x}", f"{entry.end:016x}", str(entry.perms), entry.name)
    console.print(table)
    console.print(f"ftrace: {len(system.ftrace.records)} call sites, all nops", markup=False)


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=False)
        return 0
    except _BAD_INPUT as exc:
        return _fail(exc, 2)
    except emu_errors.GuestFault as exc:
        print(exc.report, file=sys.stderr)
        return _fail(exc, 1, quiet=True)
    except emu_errors.EmuError as exc:
        return _fail(exc, 1)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        return 1
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "show"):
            exc.show()
            return code
        raise


def _fail(exc: BaseException, code: int, quiet: bool = False) -> int:
    if _state["traceback"]:
        import traceback

        traceback.print_exception(exc)
    elif not quiet:
        print(f"ftrace-emu: error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
