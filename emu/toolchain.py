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
from typing import Sequence

import guest

from .errors import ToolchainError


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"{name} not found on PATH: install gcc and binutils to build guest code")
    return path


def _run(argv: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        first = next((line for line in detail if "error" in line), detail[0] if detail else "")
        raise ToolchainError(f"{Path(argv[0]).name} failed on {' '.join(argv[-3:])}: {first}")


def compile_object(src: Path, out: Path, cwd: Path, include: Path = guest.INCLUDE_DIR) -> None:
    """Compile one C or assembly file with the guest flags (paths taken relative to cwd)."""
    rel_src = _relative(src, cwd)
    rel_inc = _relative(include, cwd)
    _run([_tool("gcc"), *guest.CFLAGS, f"-I{rel_inc}", "-c", rel_src, "-o", str(out)], cwd)


def link_relocatable(objects: Sequence[Path], out: Path, cwd: Path) -> None:
    """Join objects into one relocatable module with `ld -r`, as kbuild does for a .ko."""
    _run([_tool("ld"), "-r", "--build-id=none", "-o", str(out), *map(str, objects)], cwd)


def build_module(sources: Sequence[Path], out: Path, cwd: Path | None = None) -> Path:
    """Build a loadable module (ET_REL) from one or more C files."""
    if not sources:
        raise ToolchainError("no source files given")
    for src in sources:
        if not src.is_file():
            raise ToolchainError(f"{src}: no such source file")
    cwd = cwd or Path(sources[0]).resolve().parent
    with tempfile.TemporaryDirectory(prefix="ftrace-emu-build-") as tmp:
        objs = []
        for i, src in enumerate(sources):
            obj = Path(tmp) / f"{i}-{Path(src).stem}.o"
            compile_object(Path(src).resolve(), obj, cwd)
            objs.append(obj)
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
