"""Port of x86 runtime patching (arch/x86/kernel/ftrace.c, v4.5-v4.8.17): rewriting live call sites with breakpoints.

Another CPU may be executing a call site while it is rewritten, so x86 never lets it fetch a
half-written instruction: pass 1 puts an int3 on the first byte of every site to change,
pass 2 writes the other four bytes, pass 3 writes the first byte, each pass followed by
run_sync (an IPI that serialises every CPU).  A CPU that hits one of these int3s meanwhile
is sent past the 5-byte site by ftrace_int3_handler, as if it were a nop.  Boot and module
load conversions stay direct (nothing else runs that code yet).

naive_replace_code() is the rewriting the protocol exists to prevent: five one-byte stores
per site with the other CPU free to run between them.  It is kept only to show why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from emu.sched import Point

from .arch_x86 import MCOUNT_INSN_SIZE, NOP5, ftrace_call_replace
from .flags import EFAULT, EINVAL, EPERM
from .text import TextFault

if TYPE_CHECKING:
    from .records import DynFtrace
    from .update import Ftrace

INT3 = b"\xcc"
PATCHING_MODES = ("breakpoints", "naive", "direct")


def run_sync() -> Iterator[object]:
    """run_sync(): sync_core on every CPU.  Translated code for each written range is already
    dropped by the text-write path; the point is where the other CPU may run."""
    yield Point("run_sync", "sync_core on every CPU")


def _write(ftrace: "Ftrace", writes: list[tuple[int, bytes]]) -> int:
    """ftrace_write() for several sites in one pass; how many landed before a fault."""
    return ftrace.arch.text.write_batch(writes) if writes else 0


def x86_replace_code(ftrace: "Ftrace", enable: bool) -> Iterator[object]:
    """ftrace_replace_code() (arch/x86, v4.5-v4.8.17): the three passes, each ended by
    run_sync.  Each pass walks every record (for_ftrace_rec_iter); records that need no change
    return 0 and are counted too, which is the count "Failed on %s (%d)" prints."""
    arch = ftrace.arch
    todo = ftrace.plan_rewrites(enable)

    # Pass 1, add_breakpoints(): check each site holds what the record says, then int3.
    if ftrace.record_points:
        count, failed = 0, 0
        for rec, action, old, new in todo:
            _, failed = arch.verify_sites([(rec.ip, old)])
            if failed:
                break
            if _write(ftrace, [(rec.ip, INT3)]) != 1:
                failed = -EPERM
                break
            ftrace.emit("breakpoint", rec)
            yield Point("bp_write", f"int3 at {rec.ip:#x}")
            count += 1
    else:
        count, failed = arch.verify_sites([(rec.ip, old) for rec, _, old, _ in todo])
        # The int3s of the sites checked before any failure, in one pass: a write that
        # faults comes first in the kernel's order, before a later site's bad bytes.
        landed = _write(ftrace, [(rec.ip, INT3) for rec, _, _, _ in todo[:count]])
        for rec, _, _, _ in todo[:landed]:
            ftrace.emit("breakpoint", rec)
        if landed < count:
            count, failed = landed, -EPERM
    if failed:
        ftrace.ftrace_test_record(todo[count][0], enable)  # add_breakpoints()'s bug type
        yield from _fail(ftrace, todo, count, failed, "adding breakpoints")
        return
    yield from run_sync()

    # Pass 2, add_update(): every byte but the first.
    landed = yield from _pass(ftrace, [(rec.ip + 1, new[1:]) for rec, _, _, new in todo], "bp_update")
    if landed < len(todo):
        ftrace.ftrace_test_record(todo[landed][0], enable)  # add_update()'s bug type
        yield from _fail(ftrace, todo, landed, -EPERM, "updating code")
        return
    yield from run_sync()

    # Pass 3, finish_update(): for each record in turn, commit its flags, then write its
    # first byte: a fault leaves the records after it as they were.
    def commit(i: int) -> None:
        ftrace.ftrace_update_record(todo[i][0], enable)

    if ftrace.record_points:
        landed = yield from _pass(ftrace, [(rec.ip, new[:1]) for rec, _, _, new in todo], "bp_finish", commit)
    else:
        landed = _write(ftrace, [(rec.ip, new[:1]) for rec, _, _, new in todo])
        ftrace.ftrace_update_records((rec for rec, _, _, _ in todo[:landed]), enable)
        if landed < len(todo):
            commit(landed)  # the failing record's flags were committed before its write
    for rec, action, _, _ in todo[:landed]:
        ftrace.emit(action.name.lower(), rec)
    if landed < len(todo):
        yield from _fail(ftrace, todo, landed, -EPERM, "removing breakpoints")
        return
    yield from run_sync()


def _pass(ftrace: "Ftrace", writes: list[tuple[int, bytes]], label: str,
          before: Callable[[int], None] = lambda i: None) -> Iterator[object]:
    """One pass of writes: a point after each site with record_points, else one batch."""
    if not ftrace.record_points:
        return _write(ftrace, writes)
    for i, write in enumerate(writes):
        before(i)
        if _write(ftrace, [write]) != 1:
            return i
        yield Point(label, f"{write[0]:#x}")
    return len(writes)


def _fail(ftrace: "Ftrace", todo: list, index: int, failed: int, report: str) -> Iterator[object]:
    """The error path: pr_warn("Failed on %s (%d):\n") with the number of records the pass
    walked before the failing one, ftrace_bug() (with the bug type the pass left), and the
    breakpoints out of every record, or BUG()."""
    rec = todo[index][0] if index < len(todo) else None
    count = ftrace.records.position(rec) if rec is not None else len(ftrace.records)
    ftrace.env.printk(f"Failed on {report} ({count}):\n")
    ftrace.bug_preamble = f"Failed on {report} ({count}):\n"
    if rec is not None:
        ftrace.emit("fault", rec, str(failed))
    ftrace.ftrace_bug(failed, rec)
    for entry in todo:
        ret = remove_breakpoint(ftrace, entry[0])
        if ret:
            # `if (remove_breakpoint(rec)) BUG();` -- an int3 stays in the text for good
            ftrace.env.bug("arch/x86/kernel/ftrace.c:ftrace_replace_code",
                           f"could not remove the int3 at {ftrace.env.format_ip(entry[0].ip)} ({ret})")
    yield from run_sync()


def remove_breakpoint(ftrace: "Ftrace", rec: "DynFtrace") -> int:
    """remove_breakpoint(): put back the first byte of a site still holding an int3: the nop's
    if the other four bytes are the nop's, else the call's, if they are a call to where the
    record is going (ftrace_get_addr_new) or, failing that, where it was (addr_curr)."""
    text = ftrace.arch.text
    try:
        ins = text.read(rec.ip, MCOUNT_INSN_SIZE)
    except TextFault:
        return -EFAULT  # "If we fail the read, just give up"
    if ins[:1] != INT3:
        return 0
    nop = NOP5
    if ins[1:] != nop[1:]:
        nop = ftrace_call_replace(rec.ip, ftrace.ftrace_get_addr_new(rec))
        if ins[1:] != nop[1:]:
            nop = ftrace_call_replace(rec.ip, ftrace.ftrace_get_addr_curr(rec))
            ftrace.arch.ftrace_expected = nop
            if ins[1:] != nop[1:]:
                return -EINVAL
    return 0 if _write(ftrace, [(rec.ip, nop[:1])]) == 1 else -EPERM


def naive_replace_code(ftrace: "Ftrace", enable: bool) -> Iterator[object]:
    """In-place rewriting, one byte at a time, with no breakpoint: a CPU running the site in
    between executes a torn instruction.  Only for showing what the protocol prevents."""
    for rec, action, old, new in ftrace.plan_rewrites(enable, report_skipped=False):
        ftrace.ftrace_update_record(rec, enable)
        for i in range(MCOUNT_INSN_SIZE):
            if old[i] == new[i]:
                continue
            if _write(ftrace, [(rec.ip + i, new[i:i + 1])]) != 1:
                ftrace.ftrace_bug(-EPERM, rec)
                return
            yield Point("text_byte", f"byte {i} of {rec.ip:#x}")
        ftrace.emit(action.name.lower(), rec)


def ftrace_int3_handler(ftrace: "Ftrace", ip_after: int) -> int | None:
    """do_int3() while modifying_ftrace_code, then ftrace_int3_handler(): an int3 at a call
    site (ftrace_location(), DISABLED records included) or at the trampoline site being
    rewritten (ftrace_update_func) is skipped as if it were a nop: the address to resume at.
    None for any other int3 (a real breakpoint: an oops here)."""
    if not ftrace.modifying_ftrace_code:
        return None
    ip = ip_after - 1
    if ftrace.records.lookup(ip) is None and ip != ftrace.arch.ftrace_update_func:
        return None
    return ip + MCOUNT_INSN_SIZE
