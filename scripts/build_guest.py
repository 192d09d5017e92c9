#!/usr/bin/env python3
"""Rebuild the guest kernel image and modules with gcc, or check the committed ones.

    python scripts/build_guest.py           rebuild guest/kernel/vmlinux and guest/modules/*.ko
    python scripts/build_guest.py --check   rebuild into a temporary folder and compare;
                                            exits 1 naming every committed file that differs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import guest  # noqa: E402
from emu.errors import ToolchainError  # noqa: E402
from emu.toolchain import build_kernel, build_shipped_modules  # noqa: E402


def build_all(out_kernel: Path, out_modules: Path) -> list[Path]:
    return [build_kernel(out_kernel / "vmlinux"), *build_shipped_modules(out_modules)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare a fresh build with the committed files")
    args = parser.parse_args(argv)
    try:
        if not args.check:
            for path in build_all(guest.KERNEL_DIR, guest.MODULES_DIR):
                print(f"  built {path.relative_to(guest.GUEST_DIR.parent)}")
            return 0
        with tempfile.TemporaryDirectory(prefix="ftrace-emu-check-") as tmp:
            fresh = build_all(Path(tmp), Path(tmp))
            bad = []
            for path in fresh:
                committed = (guest.KERNEL_DIR if path.name == "vmlinux" else guest.MODULES_DIR) / path.name
                if not committed.is_file():
                    bad.append(f"{committed.relative_to(guest.GUEST_DIR.parent)}: missing")
                elif committed.read_bytes() != path.read_bytes():
                    bad.append(f"{committed.relative_to(guest.GUEST_DIR.parent)}: differs from a fresh build")
    except ToolchainError as exc:
        print(f"build_guest: {exc}", file=sys.stderr)
        return 2
    for line in bad:
        print(line, file=sys.stderr)
    if not bad:
        print(f"guest ELF files match their sources ({len(fresh)} files)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
