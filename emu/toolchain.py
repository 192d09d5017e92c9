"""Compiling guest C and assembly with the kernel's flags: the kernel image and modules.

Used by scripts/build_guest.py (which rebuilds and checks the committed ELF files) and by
`ftrace-emu build-module`.  Objects are compiled from inside the guest folder with relative
paths, so the file names recorded in them, and so the output bytes, are the same in any
checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import guest

from .errors import ToolchainError


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"{name} not found on PATH: install gcc and binutils to build guest code")
    return path


def _run(argv: Sequence[str], cwd: Path, what: str | None = None) -> str:
    """Run a tool; its diagnostics (warnings) on success, ToolchainError with the first
    error line on failure (the tool's own words, naming the user's file)."""
    proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True)
    diagnostics = (proc.stderr or "") + (proc.stdout or "")
    if proc.returncode != 0:
        detail = diagnostics.strip().splitlines()
        first = next((line for line in detail if "error" in line), detail[0] if detail else "")
        err = ToolchainError(f"{Path(argv[0]).name} failed on {what or ' '.join(argv[-3:])}: {first}")
        err.diagnostics = diagnostics
        raise err
    return diagnostics


def compile_object(src: Path, out: Path, cwd: Path, include: Path = guest.INCLUDE_DIR) -> None:
    """Compile one C or assembly file with the guest flags (paths taken relative to cwd)."""
    rel_src = _relative(src, cwd)
    rel_inc = _relative(include, cwd)
    # The debug information names the folder it was built in: the same in any checkout.
    prefix_map = f"-fdebug-prefix-map={Path(cwd).resolve()}=."
    _run([_tool("gcc"), *guest.CFLAGS, prefix_map, f"-I{rel_inc}", "-c", rel_src, "-o", str(out)], cwd)


def compile_module_object(src: str, out: Path) -> str:
    """Compile a user's module source as given (so every diagnostic names the user's file),
    with the guest flags and, as kbuild builds modules, -nostdinc: only kernel.h and the
    compiler's own headers (stdarg.h and the like), never the host's.  The warnings."""
    gcc = _tool("gcc")
    compiler_include = subprocess.run([gcc, "-print-file-name=include"], capture_output=True,
                                      text=True).stdout.strip()
    return _run([gcc, *guest.CFLAGS, "-nostdinc", "-isystem", compiler_include, f"-I{guest.INCLUDE_DIR}",
                 "-c", src, "-o", str(out)], Path.cwd(), what=src)


def link_relocatable(objects: Sequence[Path], out: Path, cwd: Path) -> None:
    """Join objects into one relocatable module with `ld -r`, as kbuild does for a .ko."""
    _run([_tool("ld"), "-r", "--build-id=none", "-o", str(out), *map(str, objects)], cwd)


def build_module(sources: Sequence[Path], out: Path, cwd: Path | None = None,
                 warn: Callable[[str], None] = lambda text: None) -> Path:
    """Build a loadable module (ET_REL) from one or more C files.  With cwd (the shipped
    modules) paths are taken relative to it, for byte-identical builds; without, each source
    is compiled as the user named it, -nostdinc, and the compiler's warnings go to warn."""
    if not sources:
        raise ToolchainError("no source files given")
    for src in sources:
        if not Path(src).is_file():
            raise ToolchainError(f"{src}: no such source file")
        if Path(src).suffix != ".c":
            raise ToolchainError(f"{src}: not a C source file (a module is built from .c files)")
    with tempfile.TemporaryDirectory(prefix="ftrace-emu-build-") as tmp:
        objs = []
        for i, src in enumerate(sources):
            obj = Path(tmp) / f"{i}-{Path(src).stem}.o"
            if cwd is None:
                diagnostics = compile_module_object(str(src), obj)
                if diagnostics:
                    warn(diagnostics)
            else:
                compile_object(Path(src).resolve(), obj, cwd)
            objs.append(obj)
        cwd = cwd or Path.cwd()
        if len(objs) == 1:
            shutil.copyfile(objs[0], out)
        else:
            link_relocatable(objs, Path(out).resolve(), cwd)
    return Path(out)


def build_kernel(out: Path, extra_sources: Sequence[Path] = ()) -> Path:
    """Build the kernel image from guest/kernel/*.c and *.S with kernel.lds, plus any extra
    C files (the benchmarks add generated ones)."""
    cwd = guest.GUEST_DIR
    sources = sorted(guest.KERNEL_DIR.glob("*.S")) + sorted(guest.KERNEL_DIR.glob("*.c")) + list(extra_sources)
    with tempfile.TemporaryDirectory(prefix="ftrace-emu-build-") as tmp:
        objs = []
        for src in sources:
            obj = Path(tmp) / f"{src.stem}.{src.suffix[1:]}.o"
            compile_object(src, obj, cwd)
            objs.append(obj)
        _run([_tool("ld"), "-static", "-nostdlib", "--build-id=none", "-z", "max-page-size=4096",
              "-z", "noexecstack", "-T", "kernel/kernel.lds", "-o", str(Path(out).resolve()),
              *map(str, objs)], cwd)
    return Path(out)


def build_shipped_modules(out_dir: Path) -> list[Path]:
    """Build every module listed in guest.MODULES into out_dir."""
    built = []
    for name, srcs in guest.MODULES.items():
        out = Path(out_dir) / name
        build_module([guest.MODULES_DIR / s for s in srcs], out, cwd=guest.GUEST_DIR)
        built.append(out)
    return built


def _relative(path: Path, cwd: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path(cwd).resolve()))
    except ValueError:
        return str(path)
