"""The module loader: layout, relocation, init, unload, and bad modules refused cleanly."""

from __future__ import annotations

import struct

import pytest

import guest
from emu.errors import ModuleLoadError
from emu.machine import Perm
from emu.modules import MODULES_VADDR, ModuleState
from emu.sched import run_to_completion


def _snapshot(kernel):
    return ([(m.name, m.state) for m in kernel.modules.modules], kernel.memory_map(),
            sorted(kernel.kallsyms.modules()))


def _load_bytes(kernel, data, name="bad.ko"):
    return run_to_completion(kernel.modules.load_module(kernel.cpus[1], data, name))


def test_hello_loads_runs_init_and_unloads(kernel):
    before = _snapshot(kernel)
    mod = kernel.modules.insmod(kernel.cpus[1], guest.module_path("hello"))
    assert mod.name == "hello" and mod.state == ModuleState.LIVE
    assert mod.core_base >= MODULES_VADDR
    assert "hello: Hello, world" in kernel.dmesg()
    assert kernel.call("hello_answer") == 42
    assert kernel.kallsyms.format(kernel.symbol("hello_answer") + 1).endswith(" [hello]")
    kernel.modules.rmmod(kernel.cpus[1], "hello")
    assert "hello: Goodbye, world" in kernel.dmesg()
    assert _snapshot(kernel) == before


def test_module_areas_get_their_protections_at_formation(kernel):
    mod = kernel.modules.insmod(kernel.cpus[1], guest.module_path("race_mod"))
    perms = {a.kind: kernel.machine.perms_at(a.base) for a in mod.areas}
    assert perms["text"] == Perm.RX
    assert perms.get("data", Perm.RW) == Perm.RW
    assert perms.get("rodata", Perm.R) == Perm.R
    assert mod.mcount_locs and all(kernel.machine.read(ip, 1) == b"\xe8" for ip in mod.mcount_locs)


def test_race_mod_calls_kernel_exports_and_round_trips_a_function_pointer(kernel):
    kernel.modules.insmod(kernel.cpus[1], guest.module_path("race_mod"))
    assert "race_mod" in kernel.dmesg()
    compute = kernel.call("race_mod_compute", 5)
    assert kernel.call("race_mod_via_kernel", 5) == compute


def test_joined_module_links_across_its_two_objects(kernel):
    mod = kernel.modules.insmod(kernel.cpus[0], guest.module_path("joined"))
    names = {s.name for s in mod.symbols}
    assert {"joined_entry", "joined_util_scale"} <= names


def test_duplicate_module_is_refused_with_eexist(kernel):
    kernel.modules.insmod(kernel.cpus[1], guest.module_path("hello"))
    before = _snapshot(kernel)
    with pytest.raises(ModuleLoadError, match="already loaded") as info:
        kernel.modules.insmod(kernel.cpus[1], guest.module_path("hello"))
    assert info.value.errno == 17
    assert _snapshot(kernel) == before


def test_failing_init_unwinds_and_names_the_value(kernel):
    before = _snapshot(kernel)
    with pytest.raises(ModuleLoadError) as info:
        kernel.modules.insmod(kernel.cpus[1], guest.module_path("fail_init"))
    assert str(info.value) == "fail_init: init_module returned -19 (ENODEV)"
    assert info.value.errno == 19
    assert "fail_init: refusing to load" in kernel.dmesg()
    assert _snapshot(kernel) == before


def _elf_sections(data: bytes):
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = secs[shstrndx]
    names = [data[strtab[4] + s[0]:].split(b"\0", 1)[0].decode() for s in secs]
    return secs, names


def _bad_cases():
    data = guest.module_path("race_mod").read_bytes()
    secs, names = _elf_sections(data)
    cases = {"truncated": (data[:100], "malformed|past the end|bad|header")}
    wrong = bytearray(data)
    wrong[0x12:0x14] = struct.pack("<H", 0x28)  # EM_ARM
    cases["wrong machine"] = (bytes(wrong), "wrong machine EM_ARM")
    undefined = bytearray(data)
    strtab = secs[names.index(".strtab")]
    blob = bytes(undefined[strtab[4]:strtab[4] + strtab[5]])
    at = blob.index(b"\0printk\0") + 1
    undefined[strtab[4] + at:strtab[4] + at + 6] = b"printq"
    cases["undefined symbol"] = (bytes(undefined), "Unknown symbol printq")
    badrel = bytearray(data)
    rela = secs[names.index(".rela.text")]
    info_off = rela[4] + 8  # first entry's r_info
    info, = struct.unpack_from("<Q", badrel, info_off)
    struct.pack_into("<Q", badrel, info_off, (info & ~0xFFFFFFFF) | 9)
    cases["unsupported relocation"] = (bytes(badrel), r"unsupported relocation R_X86_64_GOTPCREL at \.text\+0x")
    return cases


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_module_gives_one_line_error_and_leaves_no_trace(kernel, case):
    data, pattern = _bad_cases()[case]
    before = _snapshot(kernel)
    with pytest.raises(ModuleLoadError, match=pattern) as info:
        _load_bytes(kernel, data)
    assert "\n" not in str(info.value)
    assert _snapshot(kernel) == before


def test_missing_module_file_is_named(kernel, tmp_path):
    with pytest.raises(ModuleLoadError, match="nope.ko"):
        kernel.modules.insmod(kernel.cpus[0], tmp_path / "nope.ko")


def test_rmmod_of_unknown_module(kernel):
    with pytest.raises(ModuleLoadError, match="ghost: module not loaded"):
        kernel.modules.rmmod(kernel.cpus[0], "ghost")


def test_hooks_run_at_the_kernels_points_with_the_right_state_and_protections(kernel):
    seen = []

    def hook(event):
        def run(mod):
            text = mod.area("text")
            seen.append((event, mod.state, kernel.machine.perms_at(text.base)))
            yield from ()
        return run

    kernel.modules.hooks.formed.append(hook("formed"))
    kernel.modules.hooks.coming.append(hook("coming"))
    kernel.modules.hooks.going.append(hook("going"))
    kernel.modules.insmod(kernel.cpus[1], guest.module_path("race_mod"))
    kernel.modules.rmmod(kernel.cpus[1], "race_mod")
    assert seen == [
        ("formed", ModuleState.UNFORMED, Perm.RWX),
        ("coming", ModuleState.COMING, Perm.RX),
        ("going", ModuleState.GOING, Perm.RX),
    ]


def test_failing_init_runs_the_going_hooks(kernel):
    events = []

    def going(mod):
        events.append((mod.name, mod.state))
        yield from ()

    kernel.modules.hooks.going.append(going)
    with pytest.raises(ModuleLoadError):
        kernel.modules.insmod(kernel.cpus[1], guest.module_path("fail_init"))
    assert events == [("fail_init", ModuleState.GOING)]


def test_set_all_modules_text_rw_skips_unformed_modules(kernel):
    """[4.8] set_all_modules_text_rw: the hole the race goes through."""
    changed = []
    kernel.machine.protect_listeners.append(lambda lo, hi, perms, why: changed.append((lo, perms, why)))

    def formed(mod):
        changed.clear()
        yield from kernel.modules.set_all_modules_text_rw()
        formed.unformed_text = mod.area("text").base

    kernel.modules.insmod(kernel.cpus[0], guest.module_path("hello"))
    hello = kernel.modules.find("hello")
    kernel.modules.hooks.formed.append(formed)
    kernel.modules.insmod(kernel.cpus[1], guest.module_path("race_mod"))
    touched = [lo for lo, _, _ in changed[:1]]
    assert touched == [hello.area("text").base]
    assert changed[0][1:] == (Perm.RWX, "set_all_modules_text_rw: hello")
    assert formed.unformed_text not in [lo for lo, _, why in changed if why.startswith("set_all")]
