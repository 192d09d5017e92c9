"""The guest kernel and modules: C and assembly sources and the ELF files built from them.

Nothing here runs guest code; this package only says where things are and which flags
built them (one place, shared by scripts/build_guest.py and `ftrace-emu build-module`).
"""

from __future__ import annotations

from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = GUEST_DIR / "include"
KERNEL_DIR = GUEST_DIR / "kernel"
MODULES_DIR = GUEST_DIR / "modules"

#: The kernel image, linked at 0xffffffff81000000 by kernel/kernel.lds.
VMLINUX = KERNEL_DIR / "vmlinux"

#: The flags every guest object (kernel or module) is compiled with, as a kernel is.
#: -mno-sse/-mno-mmx/-mno-80387 keep gcc to general registers, as the kernel's build does;
#: -fno-optimize-sibling-calls keeps tail calls as calls, so every traced function's parent is
#: its real caller (kernels built with frame pointers use it too).
CFLAGS: tuple[str, ...] = (
    "-O2",
    "-pg",
    "-mfentry",
    "-mrecord-mcount",
    "-mcmodel=kernel",
    "-ffreestanding",
    "-fno-pic",
    "-fno-stack-protector",
    "-mno-red-zone",
    "-fno-asynchronous-unwind-tables",
    "-mno-sse",
    "-mno-mmx",
    "-mno-80387",
    "-fno-optimize-sibling-calls",
    "-fno-common",
    "-Wall",
    "-g",  # debug information, as CONFIG_DEBUG_INFO gives: prototypes for checking calls
    "-gno-record-gcc-switches",
)

#: Modules shipped with the guest: output file -> sources (several are joined with ld -r).
MODULES: dict[str, tuple[str, ...]] = {
    "race_mod.ko": ("race_mod.c",),
    "hello.ko": ("hello.c",),
    "joined.ko": ("joined_main.c", "joined_util.c"),
    "fail_init.ko": ("fail_init.c",),
    "lkdtm.ko": ("lkdtm.c",),
}


def module_path(name: str) -> Path:
    """The committed ELF file of a shipped module, by name with or without `.ko`."""
    stem = name[:-3] if name.endswith(".ko") else name
    return MODULES_DIR / f"{stem}.ko"
