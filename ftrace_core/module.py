"""Modules and ftrace: ftrace_module_init, ftrace_module_enable, ftrace_release_mod, and
where each kernel tree calls them.

| tree                  | records of a loading module               | ftrace_module_enable() runs          |
| b7ffffbb46f2^         | counted and enabled in ftrace_update_code | (does not exist)                     |
| b7ffffbb46f2 (seed)   | created DISABLED                          | at once, from ftrace_module_init     |
| 7dcd182bec27 .. v4.6  | created DISABLED                          | from complete_formation, after RO    |
| v4.7 ..               | created DISABLED                          | from prepare_coming_module, after RO |

The module loader (emu.modules) calls out through hooks; install() registers on the ones
where the variant's kernel made its direct calls.
"""

from __future__ import annotations

from typing import Iterator, Protocol

from emu.sched import Point

from .flags import FTRACE_FL_DISABLED
from .kernels import DISABLED_RECORDS, ENABLE_AFTER_RO, ENABLE_IN_PREPARE_COMING
from .update import Ftrace


class ModuleLike(Protocol):
    name: str
    mcount_locs: list[int]

    def within_core(self, addr: int) -> bool: ...


def ftrace_module_init(ftrace: Ftrace, mod: ModuleLike) -> Iterator[object]:
    """ftrace_module_init(): records for the module's call sites, each turned into a nop
    (the module is UNFORMED, its text still writable).  The seed kernel then enables them
    straight away, "the same behaviour as previously"."""
    ftrace.touch_disabled()
    if ftrace.ftrace_disabled or not mod.mcount_locs:
        return
    yield from ftrace.ftrace_process_locs(mod, list(mod.mcount_locs))
    if ftrace.kernel.has(DISABLED_RECORDS) and not ftrace.kernel.has(ENABLE_AFTER_RO):
        yield from ftrace_module_enable(ftrace, mod)


def ftrace_module_enable(ftrace: Ftrace, mod: ModuleLike) -> Iterator[object]:
    """ftrace_module_enable(): under ftrace_lock, clear DISABLED on the module's records and,
    if tracing is on, count the ops that want each one and enable it, with the text made
    writable for the purpose and read-only again afterwards."""
    yield from ftrace.ftrace_lock.acquire()
    try:
        if ftrace.ftrace_disabled:
            return
        started = ftrace.ftrace_start_up > 0
        if started:
            ftrace.updating += 1
            yield from ftrace.arch.ftrace_arch_code_modify_prepare()
        failed_out = False
        for pg in list(ftrace.records.pages):
            for rec in pg.records:
                # Module records share no page with others: the first foreign one ends the page.
                if not mod.within_core(rec.ip):
                    break
                cnt = ftrace.referenced_filters(rec) if started else 0
                rec.flags = cnt  # clears FTRACE_FL_DISABLED
                ftrace.emit("module_enable", rec, f"refs={cnt}")
                if started and cnt:
                    yield Point("ftrace_module_enable", f"{mod.name} {rec.ip:#x}")
                    failed = ftrace.replace_code_one(rec, True)
                    if failed:
                        ftrace.ftrace_bug(failed, rec)
                        failed_out = True
                        break
            if failed_out:
                break
        if started:
            yield from ftrace.arch.ftrace_arch_code_modify_post_process()
            ftrace.updating -= 1
    finally:
        ftrace.ftrace_lock.release()


def ftrace_release_mod(ftrace: Ftrace, mod: ModuleLike) -> Iterator[object]:
    """ftrace_release_mod(): under ftrace_lock, unlink the module's record pages."""
    yield from ftrace.ftrace_lock.acquire()
    try:
        if ftrace.ftrace_disabled:
            return
        pages = ftrace.records.pages
        keep = []
        for i, pg in enumerate(pages):
            if pg.records and mod.within_core(pg.records[0].ip):
                # "As core pages are first, the first page should never be a module page":
                # WARN_ON() and give up, ftrace lives on (v4.4-v4.8).
                if ftrace.warn_on(i == 0, "ftrace_release_mod: pg == ftrace_pages_start"):
                    return
                for rec in pg.records:
                    ftrace.emit("released", rec)
                continue
            keep.append(pg)
        ftrace.records.pages[:] = keep
    finally:
        ftrace.ftrace_lock.release()
    yield Point("ftrace_release_mod", mod.name)


def install(ftrace: Ftrace, loader: object) -> None:
    """Register ftrace on the module loader's hooks where the variant's kernel called it, and
    give the loader the shape of that tree's kernel/module.c."""
    hooks = loader.hooks
    hooks.formed.append(lambda mod: ftrace_module_init(ftrace, mod))
    loader.has_prepare_coming_module = ftrace.kernel.has(ENABLE_IN_PREPARE_COMING)
    if ftrace.kernel.has(ENABLE_IN_PREPARE_COMING):
        hooks.coming.append(lambda mod: ftrace_module_enable(ftrace, mod))
    elif ftrace.kernel.has(ENABLE_AFTER_RO):
        hooks.formation_complete.append(lambda mod: ftrace_module_enable(ftrace, mod))
    hooks.going.append(lambda mod: ftrace_release_mod(ftrace, mod))


def module_records(ftrace: Ftrace, mod: ModuleLike) -> list:
    return [rec for rec in ftrace.records if mod.within_core(rec.ip)]


def disabled_records(ftrace: Ftrace) -> list:
    return [rec for rec in ftrace.records if rec.flags & FTRACE_FL_DISABLED]
