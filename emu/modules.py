"""The module loader: load_module and delete_module with the kernel's steps and states.

A module is a relocatable ELF object.  Its allocated sections are laid out into text, rodata
and data areas of their own pages in the module space (0xffffffffa0000000 and up), undefined
symbols are resolved against the kernel's exports (__ksymtab) only, relocations applied, and
`__mcount_loc` read back as the module's call-site list.  States go UNFORMED -> COMING ->
LIVE (GOING on failure or unload) and `complete_formation` makes text R-X.

Other subsystems hook in where the kernel calls them directly: "formed" is
ftrace_module_init's place (text still writable, module UNFORMED), "formation_complete" the end
of complete_formation() (text read-only, COMING: where v4.5 calls ftrace_module_enable),
"coming" is prepare_coming_module's (where v4.7 and later call it), "going" is
ftrace_release_mod's.  Each hook is a generator function taking the Module, so it may yield
like any kernel path.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator, Iterator

from .cpu import Cpu
from .elf import SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, SHN_ABS, SHN_COMMON, SHN_UNDEF, ObjectFile, read_object
from .errors import ElfError, GuestFault, ModuleInitFault, ModuleLoadError
from .kallsyms import Kallsyms, KSym
from .machine import PAGE_SIZE, Machine, Perm, page_align_up
from .relocs import compute
from .sched import Lock, Point, run_to_completion

MODULES_VADDR = 0xFFFFFFFFA0000000
#: Instructions init_module / cleanup_module may run before the load is given up as hung.
INIT_BUDGET = 50_000_000
MODULES_END = 0xFFFFFFFFFF000000
MAX_MODULE_SIZE = 64 << 20
EEXIST, ENOENT, ENOEXEC, EBUSY, ENOMEM = 17, 2, 8, 16, 12

Hook = Callable[["Module"], Iterator[object]]


class ModuleState(enum.Enum):
    LIVE = 0
    COMING = 1
    GOING = 2
    UNFORMED = 3


@dataclass
class ModuleArea:
    """One of a module's three areas, each on pages of its own."""

    kind: str  # "text", "rodata", "data"
    base: int
    size: int
    final: Perm


@dataclass
class Module:
    name: str
    path: str
    state: ModuleState = ModuleState.UNFORMED
    areas: list[ModuleArea] = field(default_factory=list)
    symbols: list[KSym] = field(default_factory=list)
    mcount_locs: list[int] = field(default_factory=list)  # call sites, relocated, file order
    init: int | None = None
    exit: int | None = None
    #: Held while the module loads (UNFORMED, COMING): a second load of the same name waits on
    #: it, as add_unformed_module() waits on module_wq until finished_loading().
    loading: Lock | None = field(default=None, repr=False)

    def finished_loading(self) -> None:
        """LIVE, GOING or gone: wake_up_all(&module_wq)."""
        if self.loading is not None:
            self.loading.release()
            self.loading = None

    @property
    def core_base(self) -> int:
        return self.areas[0].base

    @property
    def core_size(self) -> int:
        last = self.areas[-1]
        return last.base + last.size - self.core_base

    def within_core(self, addr: int) -> bool:
        """The kernel's within_module_core()."""
        return self.core_base <= addr < self.core_base + self.core_size

    def area(self, kind: str) -> ModuleArea | None:
        return next((a for a in self.areas if a.kind == kind), None)

    def __repr__(self) -> str:
        return f"<Module {self.name} {self.state.name} core={self.core_base:#x}+{self.core_size:#x}>"


@dataclass
class ModuleHooks:
    formed: list[Hook] = field(default_factory=list)
    formation_complete: list[Hook] = field(default_factory=list)
    coming: list[Hook] = field(default_factory=list)
    going: list[Hook] = field(default_factory=list)


def _errname(value: int) -> str:
    import errno as _errno

    return _errno.errorcode.get(-value, "") if value < 0 else ""


class ModuleLoader:
    def __init__(self, machine: Machine, kallsyms: Kallsyms, exports: dict[str, int],
                 log: Callable[[str], None] | None = None):
        self.machine = machine
        self.log = log  # printk, for oopses in init/exit
        self.kallsyms = kallsyms
        self.exports = exports
        self.hooks = ModuleHooks()
        self.module_mutex = Lock("module_mutex")
        self.modules: list[Module] = []  # the kernel's `modules` list, load order
        self.tracker = None  # an emu.footprint.Tracker: module list and state changes
        self._parsed: dict[bytes, ObjectFile] = {}  # parse results by file content

    #: Whether the modelled kernel/module.c has prepare_coming_module() (v4.6 and later).
    has_prepare_coming_module = True

    def _touch(self, write: bool = True) -> None:
        if self.tracker is not None:
            self.tracker.touch(("modules",), write)

    def parse(self, data: bytes, path: str) -> ObjectFile:
        """read_object(), remembered by content: parsing is pure, and slow in pyelftools."""
        key = hashlib.sha256(data).digest() + path.encode()
        obj = self._parsed.get(key)
        if obj is None:
            obj = self._parsed[key] = read_object(data, path)
        return obj

    def find(self, name: str) -> Module | None:
        return next((m for m in self.modules if m.name == name), None)

    def module_at(self, addr: int) -> Module | None:
        """__module_address(): UNFORMED modules are invisible."""
        return next((m for m in self.modules if m.state != ModuleState.UNFORMED and m.within_core(addr)), None)

    # -- load -------------------------------------------------------------------------------
    def insmod(self, cpu: Cpu, path: str | Path) -> Module:
        """Load a module file with nothing else running."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModuleLoadError(f"{path}: {exc.strerror.lower() if exc.strerror else exc}", ENOENT) from None
        return run_to_completion(self.load_module(cpu, data, str(path)))

    def load_module(self, cpu: Cpu, data: bytes, path: str, quantum: int | None = None
                    ) -> Generator[object, None, Module]:
        """load_module(): parse, lay out, link, hand to ftrace, form, and run init."""
        if not data:
            raise ModuleLoadError(f"{path}: empty file, not an ELF module", ENOEXEC)
        try:
            obj = self.parse(data, path)
        except ElfError as exc:
            raise ModuleLoadError(str(exc), ENOEXEC) from None
        name = _module_name(obj, path)
        while True:  # add_unformed_module()
            yield from self.module_mutex.acquire()
            try:
                existing = self.find(name)
                wait = None
                if existing is not None and existing.loading is not None:
                    wait = existing.loading  # "Wait in case it fails to load."
                elif existing is not None:
                    raise ModuleLoadError(f"{name}: module is already loaded ({existing.state.name})", EEXIST)
                else:
                    mod = Module(name, path)
                    mod.loading = Lock(f"module_wq:{name}")
                    mod.loading.owner = mod  # a fresh lock: taken without waiting
                    self.modules.append(mod)
                    self._touch()
            finally:
                self.module_mutex.release()
            if wait is None:
                break
            yield from wait.acquire()  # wait_event_interruptible(module_wq, finished_loading(name))
            wait.release()
        yield Point("add_unformed_module", f"{name}: UNFORMED")
        try:
            placement = self._layout(mod, obj)
            self._simplify_and_relocate(mod, obj, placement)
            self._find_mcount_locs(mod, obj, placement)
            self.kallsyms.add(mod.symbols, mod.name, [(a.base, a.base + a.size) for a in mod.areas if a.kind == "text"])
            self.kallsyms.unformed.add(mod.name)
            for a in mod.areas:  # the clock counts its instructions from the text as loaded
                if a.kind == "text":
                    self.machine.clock.add_code(a.base, self.machine.read(a.base, a.size),
                                                [(s.addr, s.size) for s in mod.symbols if s.is_text])
            self._touch()
        except Exception:
            self._free(mod)
            raise
        try:
            for hook in list(self.hooks.formed):
                yield from hook(mod)
            yield Point("ftrace_module_init", f"{name}: {len(mod.mcount_locs)} call sites handed to ftrace")
        except Exception:
            # The kernel's error path releases what the formed hooks set up (ftrace_release_mod).
            yield from self._going(mod)
            raise
        try:
            yield from self._complete_formation(mod)
        except Exception:
            yield from self._going(mod)
            raise
        yield from self._prepare_coming(mod)
        yield from self._do_init_module(cpu, mod, quantum)
        return mod

    def _layout(self, mod: Module, obj: ObjectFile) -> dict[int, int]:
        """layout_and_allocate(): section index -> load address."""
        groups: dict[str, list] = {"text": [], "rodata": [], "data": []}
        for sec in obj.sections:
            if not sec.flags & SHF_ALLOC or sec.name == ".modinfo" or sec.size == 0:
                continue
            if sec.size > MAX_MODULE_SIZE or sec.align > PAGE_SIZE:
                raise ModuleLoadError(f"{mod.name}: section {sec.name} has size {sec.size:#x} and "
                                      f"alignment {sec.align:#x}, too large", ENOEXEC)
            kind = "text" if sec.flags & SHF_EXECINSTR else "data" if sec.flags & SHF_WRITE else "rodata"
            groups[kind].append(sec)
        sizes, offsets = {}, {}
        for kind, secs in groups.items():
            off = 0
            for sec in secs:
                off = (off + sec.align - 1) & ~(sec.align - 1)
                offsets[sec.index] = off
                off += sec.size
            sizes[kind] = page_align_up(off)
        total = sum(sizes.values())
        if total == 0:
            raise ModuleLoadError(f"{mod.name}: module has no loadable sections", ENOEXEC)
        if total > MAX_MODULE_SIZE:
            raise ModuleLoadError(f"{mod.name}: module needs {total:#x} bytes, more than the module space allows", ENOMEM)
        base = self._find_space(total)
        placement: dict[int, int] = {}
        final = {"text": Perm.RX, "rodata": Perm.R, "data": Perm.RW}
        cursor = base
        for kind, secs in groups.items():
            if not sizes[kind]:
                continue
            # module_alloc memory is writable and executable until complete_formation.
            self.machine.map(f"{mod.name} .{kind}", cursor, sizes[kind], Perm.RWX)
            mod.areas.append(ModuleArea(kind, cursor, sizes[kind], final[kind]))
            for sec in secs:
                placement[sec.index] = cursor + offsets[sec.index]
                if sec.kind != "SHT_NOBITS":
                    self.machine.write(placement[sec.index], sec.data)
            cursor += sizes[kind]
        return placement

    def _find_space(self, size: int) -> int:
        taken = sorted((m.core_base, m.core_base + m.core_size) for m in self.modules if m.areas)
        addr = MODULES_VADDR
        for lo, hi in taken:
            if addr + size <= lo:
                break
            addr = max(addr, hi)
        if addr + size > MODULES_END:
            raise ModuleLoadError("module space exhausted", ENOMEM)
        return addr

    def _symbol_value(self, mod: Module, obj: ObjectFile, index: int, placement: dict[int, int]) -> int:
        sym = obj.symbols[index]
        shndx = sym.shndx
        if shndx in ("SHN_UNDEF", SHN_UNDEF):
            if sym.name in self.exports:
                return self.exports[sym.name]
            raise ModuleLoadError(f"{mod.name}: Unknown symbol {sym.name} (err -2)", ENOENT)
        if shndx in ("SHN_ABS", SHN_ABS):
            return sym.value
        if shndx in ("SHN_COMMON", SHN_COMMON):
            raise ModuleLoadError(f"{mod.name}: common symbol {sym.name} (build with -fno-common)", ENOEXEC)
        if not isinstance(shndx, int) or shndx >= len(obj.sections):
            raise ModuleLoadError(f"{mod.name}: symbol {sym.name or index} is in section {shndx}, "
                                  "which does not exist", ENOEXEC)
        if shndx not in placement:
            raise ModuleLoadError(f"{mod.name}: symbol {sym.name or index} is in section "
                                  f"{obj.sections[shndx].name}, which is not loaded", ENOEXEC)
        return placement[shndx] + sym.value

    def _simplify_and_relocate(self, mod: Module, obj: ObjectFile, placement: dict[int, int]) -> None:
        """simplify_symbols() + apply_relocations(), then the module's kallsyms."""
        for target, relocs in sorted(obj.relocations.items()):
            if target not in placement:
                continue
            sec = obj.sections[target]
            for rel in relocs:
                where = f"{sec.name}+{rel.offset:#x}"
                if rel.offset + 8 > sec.size and rel.offset + 4 > sec.size:
                    raise ModuleLoadError(f"{mod.name}: relocation at {where} is outside section "
                                          f"{sec.name} ({sec.size:#x} bytes)", ENOEXEC)
                s = self._symbol_value(mod, obj, rel.symbol, placement)
                p = placement[target] + rel.offset
                value = compute(mod.name, rel.type, s, rel.addend, p, where)
                if rel.offset + len(value) > sec.size:
                    raise ModuleLoadError(f"{mod.name}: relocation at {where} is outside section "
                                          f"{sec.name} ({sec.size:#x} bytes)", ENOEXEC)
                self.machine.write(p, value)
        for sym in obj.symbols:
            if sym.kind not in ("STT_FUNC", "STT_OBJECT") or not sym.name:
                continue
            if not isinstance(sym.shndx, int) or sym.shndx not in placement:
                continue
            addr = placement[sym.shndx] + sym.value
            is_text = sym.kind == "STT_FUNC"
            mod.symbols.append(KSym(sym.name, addr, sym.size, mod.name, is_text))
            if sym.bind == "STB_GLOBAL" and sym.name == "init_module":
                mod.init = addr
            elif sym.bind == "STB_GLOBAL" and sym.name == "cleanup_module":
                mod.exit = addr

    def _find_mcount_locs(self, mod: Module, obj: ObjectFile, placement: dict[int, int]) -> None:
        for sec in obj.sections:
            if sec.name == "__mcount_loc" and sec.index in placement:
                raw = self.machine.read(placement[sec.index], sec.size - sec.size % 8)
                locs = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
                text = mod.area("text")
                fentry = self.exports.get("__fentry__")
                for loc in locs:
                    if text is None or not text.base <= loc <= text.base + text.size - 5:
                        raise ModuleLoadError(f"{mod.name}: __mcount_loc entry {loc:#x} is outside the module's text",
                                              ENOEXEC)
                    # What recordmcount guarantees at build time: each entry is `call __fentry__`.
                    site = self.machine.read(loc, 5)
                    target = (loc + 5 + int.from_bytes(site[1:], "little", signed=True)) & ((1 << 64) - 1)
                    if site[0] != 0xE8 or target != fentry:
                        raise ModuleLoadError(f"{mod.name}: __mcount_loc entry {loc:#x} is not a call to __fentry__ "
                                              f"({site.hex(' ')})", ENOEXEC)
                mod.mcount_locs.extend(locs)

    def _complete_formation(self, mod: Module) -> Iterator[object]:
        """complete_formation(): under module_mutex, text R-X, rodata R, data RW; COMING."""
        yield from self.module_mutex.acquire()
        try:
            for area in mod.areas:
                self.machine.protect(area.base, area.size, area.final, f"{mod.name}: module_enable_ro")
                yield Point("module_enable_ro", f"{mod.name} .{area.kind} {area.final}")
            mod.state = ModuleState.COMING
            self.kallsyms.unformed.discard(mod.name)  # "kallsyms etc. can see us"
            self._touch()
        finally:
            self.module_mutex.release()
        yield Point("complete_formation", f"{mod.name}: COMING, text read-only")
        for hook in list(self.hooks.formation_complete):
            yield from hook(mod)

    def set_all_modules_text_rw(self) -> Iterator[object]:
        """set_all_modules_text_rw() (v4.4-v4.8.17): under module_mutex, every module's text becomes
        writable, except UNFORMED ones, which are still being set up."""
        yield from self._set_all_modules_text(Perm.RWX, "set_all_modules_text_rw")

    def set_all_modules_text_ro(self) -> Iterator[object]:
        yield from self._set_all_modules_text(Perm.RX, "set_all_modules_text_ro")

    def _set_all_modules_text(self, perms: Perm, why: str) -> Iterator[object]:
        yield from self.module_mutex.acquire()
        try:
            self._touch(write=False)
            for mod in self.modules:
                text = mod.area("text")
                if mod.state == ModuleState.UNFORMED or text is None:
                    continue
                self.machine.protect(text.base, text.size, perms, f"{why}: {mod.name}")
                yield Point(why, f"{mod.name} .text {perms}")
        finally:
            self.module_mutex.release()

    def _prepare_coming(self, mod: Module) -> Iterator[object]:
        """prepare_coming_module() (v4.6 on, 7e545d6eca20); before it, what followed
        complete_formation() went straight on to parse_args and do_init_module."""
        if not self.has_prepare_coming_module:
            return
        yield Point("prepare_coming_module", mod.name)
        for hook in list(self.hooks.coming):
            yield from hook(mod)

    def _do_init_module(self, cpu: Cpu, mod: Module, quantum: int | None) -> Iterator[object]:
        ret = 0
        if mod.init is not None:
            yield Point("do_init_module", mod.name)
            try:
                ret = yield from cpu.call(mod.init, quantum=quantum, budget=INIT_BUDGET)
            except GuestFault as fault:
                yield from self._going(mod)
                raise self._init_fault(mod, "init_module", fault) from None
            ret = ((ret + (1 << 31)) % (1 << 32)) - (1 << 31)  # init returns int
        if ret < 0:
            yield from self._going(mod)
            name = _errname(ret)
            raise ModuleLoadError(f"{mod.name}: init_module returned {ret}" + (f" ({name})" if name else ""), -ret)
        mod.state = ModuleState.LIVE
        mod.finished_loading()
        self._touch()
        yield Point("module_live", mod.name)

    def _going(self, mod: Module) -> Iterator[object]:
        mod.state = ModuleState.GOING
        mod.finished_loading()
        self._touch()
        for hook in list(self.hooks.going):
            yield from hook(mod)
        self._free(mod)

    def _free(self, mod: Module) -> None:
        """free_module(): unlink, drop symbols, unmap."""
        mod.finished_loading()
        self.kallsyms.remove_module(mod.name)
        for area in mod.areas:
            self.machine.unmap(area.base)
        mod.areas.clear()
        if mod in self.modules:
            self.modules.remove(mod)
        self._touch()

    # -- unload -----------------------------------------------------------------------------
    def rmmod(self, cpu: Cpu, name: str, force: bool = False) -> None:
        run_to_completion(self.delete_module(cpu, name, force=force))

    def delete_module(self, cpu: Cpu, name: str, quantum: int | None = None, force: bool = False
                      ) -> Generator[object, None, None]:
        """delete_module(): GOING, exit, the going hooks, free.  force is `rmmod -f`
        (O_TRUNC with CONFIG_MODULE_FORCE_UNLOAD): a module without an exit function goes too."""
        yield from self.module_mutex.acquire()
        try:
            mod = self.find(name)
            if mod is None:
                raise ModuleLoadError(f"{name}: module not loaded", ENOENT)
            if mod.state != ModuleState.LIVE:
                raise ModuleLoadError(f"{name}: module is {mod.state.name}, not LIVE", EBUSY)
            # "If it has an init func, it must have an exit func to unload" (v4.4-v4.8).
            if mod.init is not None and mod.exit is None and not force:
                raise ModuleLoadError(f"{name}: module has an init function but no exit function: "
                                      "it cannot be unloaded", EBUSY)
            # try_stop_module() marks it GOING before exit() runs (v4.4-v4.8 delete_module).
            mod.state = ModuleState.GOING
            self._touch()
        finally:
            self.module_mutex.release()
        if mod.exit is not None:
            try:
                yield from cpu.call(mod.exit, quantum=quantum, budget=INIT_BUDGET)
            except GuestFault as fault:
                yield from self._going(mod)
                raise self._init_fault(mod, "cleanup_module", fault) from None
        yield from self._going(mod)

    def _init_fault(self, mod: Module, what: str, fault: GuestFault) -> ModuleInitFault:
        """An oops in a module's init or exit: logged whole, reported in one line; the module
        is gone (unlike the kernel, where it would stay half-loaded)."""
        if self.log is not None:
            for line in fault.report.splitlines():
                self.log(line + "\n")
        return ModuleInitFault(f"{mod.name}: {what} oopsed: {fault.report.splitlines()[0]} "
                               f"(at {self.kallsyms.format(fault.rip)})", fault.report)


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MODULE_NAME_LEN = 56  # MODULE_NAME_LEN on 64-bit


def _module_name(obj: ObjectFile, path: str) -> str:
    """The name in .modinfo ("name=..."), else the file's, which must be a valid module name."""
    name = None
    for sec in obj.sections:
        if sec.name == ".modinfo":
            for item in sec.data.split(b"\0"):
                if item.startswith(b"name="):
                    name = item[5:].decode("ascii", "replace")
    if name is None:
        stem = Path(path).name
        name = stem[:-3] if stem.endswith(".ko") else stem
    if not name or len(name) >= MODULE_NAME_LEN or not set(name) <= _NAME_CHARS:
        raise ModuleLoadError(f"{path}: invalid module name {name[:MODULE_NAME_LEN]!r} "
                              f"(letters, digits, _ and -, under {MODULE_NAME_LEN} characters)", ENOEXEC)
    return name
