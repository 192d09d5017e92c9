"""Test doubles for the ftrace core: text in plain memory and a kernel environment that
collects what it prints.  With them the core runs without an emulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from emu.sched import Point

from .arch_x86 import Addresses, ArchX86, ftrace_call_replace
from .text import TextFault
from .update import Ftrace

FAKE_BASE = 0xFFFFFFFF81000000


class FakeText:
    """Text as a bytearray with page-granular write permission, like the real thing."""

    def __init__(self, base: int, size: int):
        self.base = base
        self.mem = bytearray(size)
        self.writable = False
        self.readonly_ranges: list[tuple[int, int]] = []  # stay read-only even when prepared
        self.writes: list[tuple[int, bytes]] = []

    def read(self, ip: int, size: int) -> bytes:
        off = ip - self.base
        if off < 0 or off + size > len(self.mem):
            raise TextFault(ip, "unmapped")
        return bytes(self.mem[off:off + size])

    def write(self, ip: int, data: bytes) -> None:
        off = ip - self.base
        if off < 0 or off + len(data) > len(self.mem):
            raise TextFault(ip, "unmapped")
        if not self.writable or any(lo <= ip < hi for lo, hi in self.readonly_ranges):
            raise TextFault(ip, "read-only")
        self.mem[off:off + len(data)] = data
        self.writes.append((ip, bytes(data)))

    def write_batch(self, writes: list[tuple[int, bytes]]) -> int:
        for i, (ip, data) in enumerate(writes):
            try:
                self.write(ip, data)
            except TextFault:
                return i
        return len(writes)

    def prepare(self) -> Iterator[object]:
        self.writable = True
        yield Point("fake:text_rw")

    def post_process(self) -> Iterator[object]:
        self.writable = False
        yield Point("fake:text_ro")


@dataclass
class FakeEnv:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def printk(self, text: str) -> None:
        self.lines.append(text)

    def format_ip(self, ip: int) -> str:
        return f"fn_{ip - FAKE_BASE:x}+0x0/0x10"

    def name_ip(self, ip: int) -> str:
        return f"fn_{ip - FAKE_BASE:x}"

    def sym_short(self, ip: int) -> str:
        return self.name_ip(ip)

    def warn(self, where: str, file: str = "kernel/trace/ftrace.c") -> None:
        self.warnings.append(where)

    def bug(self, where: str, detail: str) -> None:
        from emu.errors import GuestFault

        raise GuestFault(f"kernel BUG at {where}!\n{detail}", cpu=0, rip=0, address=None, kind="BUG")

    @property
    def log(self) -> str:
        return "".join(self.lines)


def fake_ftrace(nr_sites: int = 32, variant: str = "fixed", patching: str = "direct"
                ) -> tuple[Ftrace, FakeText, FakeEnv, list[int]]:
    """A core with nr_sites functions 16 bytes apart, each starting with `call __fentry__`,
    booted (ftrace_init has turned every site into the nop).  Runtime updates use the
    generic direct rewriting unless told otherwise."""
    from emu.sched import run_to_completion

    size = 0x2000 + (nr_sites * 16 + 0xFFF) // 0x1000 * 0x1000  # a spare page at the end for modules
    text = FakeText(FAKE_BASE, size)
    addrs = Addresses(mcount=FAKE_BASE, ftrace_caller=FAKE_BASE + 0x100, ftrace_call=FAKE_BASE + 0x120,
                      ftrace_stub=FAKE_BASE + 0x140, ftrace_ops_list_func=FAKE_BASE + 0x160)
    text.mem[0x120 - 0:0x125] = ftrace_call_replace(addrs.ftrace_call, addrs.ftrace_stub)
    sites = [FAKE_BASE + 0x1000 + i * 16 for i in range(nr_sites)]
    for ip in sites:
        text.mem[ip - FAKE_BASE:ip - FAKE_BASE + 5] = ftrace_call_replace(ip, addrs.mcount)
    env = FakeEnv()
    ftrace = Ftrace(ArchX86(text, addrs, env.warn), env, variant)
    ftrace.patching = patching
    text.writable = True  # early boot
    run_to_completion(ftrace.ftrace_init(sites))
    text.writable = False
    return ftrace, text, env, sites


def snapshot(system) -> tuple:
    """What a failed load must leave as it found it: the module list, the memory map (with
    protections), ftrace's records and flags, kallsyms, the ops and their hashes."""
    kernel = system.kernel
    return (
        tuple((m.name, m.state.name) for m in kernel.modules.modules),
        tuple(str(e) for e in kernel.memory_map()),
        tuple((r.ip, r.flags) for r in system.ftrace.records),
        tuple((s.name, s.addr, s.module) for s in kernel.kallsyms),
        tuple((o.name, o.flags, tuple(o.filter_hash), tuple(o.notrace_hash)) for o in system.ftrace.ops_list),
        system.ftrace.ftrace_disabled,
    )


def try_load(system, data: bytes, name: str) -> str:
    """Load a (possibly malformed) module on CPU 1 and unload it again if it loaded; return the
    outcome ("loaded", or the error's class and message).  Raises AssertionError when the
    loader broke its promise: an error that is not its own or not one line, or any change to
    the module list, the memory map, ftrace's records and ops, or kallsyms."""
    from emu.errors import ModuleLoadError
    from emu.sched import run_to_completion

    kernel = system.kernel
    before = snapshot(system)
    try:
        mod = run_to_completion(kernel.modules.load_module(kernel.cpus[1], data, name))
    except ModuleLoadError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"error message not one line: {message!r}"
        assert snapshot(system) == before, f"state changed after a failed load: {message}"
        return f"{type(exc).__name__}: {message}"
    try:
        # rmmod -f: a module with init and no exit cannot be unloaded otherwise.
        run_to_completion(kernel.modules.delete_module(kernel.cpus[1], mod.name, force=True))
    except ModuleLoadError:
        pass  # cleanup_module oopsed; the module is gone all the same
    assert snapshot(system) == before, "state changed after a load and unload"
    return "loaded"
