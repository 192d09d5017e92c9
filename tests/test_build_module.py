"""build-module: a module author's view (gcc's own diagnostics naming their file, no host
headers, the kernel's module macros), and kernel.h declaring only what the kernel exports."""

from __future__ import annotations

import os
import re

from emu.kernel import Kernel
from ftrace_core.cli import main
from ftrace_core.system import boot
import guest


def _build(capsys, tmp_path, name: str, source: str):
    (tmp_path / name).write_text(source)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["build-module", name, "-o", "m.ko"])
    finally:
        os.chdir(cwd)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_warnings_and_errors_are_gccs_own_lines_naming_the_users_file(capsys, tmp_path):
    code, out, err = _build(capsys, tmp_path, "warn.c", "#include <kernel.h>\n"
                            "int init_module(void) { int unused; return 0; }\n")
    assert code == 0 and out.startswith("built m.ko")
    assert "warn.c:2:29: warning: unused variable" in err
    code, out, err = _build(capsys, tmp_path, "bad.c", "#include <kernel.h>\nint init_module(void) { return y; }\n")
    assert code == 2
    assert "bad.c:2:32: error: ‘y’ undeclared" in err
    assert err.splitlines()[-1].startswith("ftrace-emu: error: gcc failed on bad.c: bad.c:2:32: error:")
    assert "ftrace-emu-build" not in err and "/tmp/" not in err.replace(str(tmp_path), "")


def test_host_headers_cannot_leak_in_and_other_files_are_refused(capsys, tmp_path):
    code, _, err = _build(capsys, tmp_path, "std.c", "#include <stdio.h>\nint init_module(void) { return 0; }\n")
    assert code == 2 and "std.c:1:10: fatal error: stdio.h: No such file or directory" in err
    code, _, err = _build(capsys, tmp_path, "notes.txt", "hello\n")
    assert code == 2 and "notes.txt: not a C source file" in err


def test_the_module_macros_a_module_author_expects(capsys, tmp_path):
    code, _, err = _build(capsys, tmp_path, "mac.c", "#include <kernel.h>\n"
                          "static int mac_up(void) { pr_info(\"mac: up\\n\"); return 0; }\n"
                          "static void mac_down(void) { pr_info(\"mac: down\\n\"); }\n"
                          "module_init(mac_up);\nmodule_exit(mac_down);\n"
                          "MODULE_LICENSE(\"GPL\");\nMODULE_DESCRIPTION(\"macros\");\n")
    assert code == 0, err
    system = boot("fixed")
    system.insmod(tmp_path / "m.ko")
    system.rmmod("m")
    assert "mac: up" in system.dmesg() and "mac: down" in system.dmesg()
    modinfo = next(s for s in __import__("emu.elf", fromlist=["read_object"]).read_object(
        (tmp_path / "m.ko").read_bytes(), "m.ko").sections if s.name == ".modinfo")
    assert b"license=GPL" in modinfo.data and b"description=macros" in modinfo.data


def test_kernel_h_declares_only_what_the_kernel_exports():
    """A module can link only against __ksymtab: every function kernel.h declares is there."""
    exports = set(Kernel(guest.VMLINUX).exports)
    src = re.sub(r"/\*.*?\*/", "", (guest.INCLUDE_DIR / "kernel.h").read_text(), flags=re.S)
    declared = set(re.findall(r"^[a-z_][\w\s\*]*?\b(\w+)\s*\([^;{]*\)\s*(?:__attribute__\(\(.*?\)\))?\s*;",
                              src, flags=re.M))
    assert declared and declared <= exports, sorted(declared - exports)
