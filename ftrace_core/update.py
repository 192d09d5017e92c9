"""The engine of kernel/trace/ftrace.c: records, the ops list, reference counting, deciding
what each call site must become, and applying it.  Shared code follows v4.5-v4.8 where those
trees agree; where they differ, the variant's tree (ftrace_core.kernels) decides.

The state the kernel keeps in globals (ftrace_pages, ftrace_ops_list, ftrace_disabled,
ftrace_start_up, ftrace_trace_function, ...) lives in one Ftrace object.  Paths that can be
interleaved with another CPU are generators yielding emu.sched points: around ftrace_lock,
each protection change (inside the arch layer) and each record that is rewritten.
"""

from __future__ import annotations

from typing import Callable, Generator, Iterable, Iterator

from emu.sched import Lock, Point

from . import bug
from .breakpoints import naive_replace_code, x86_replace_code
from .arch_x86 import NOP5, ArchX86
from .env import KernelEnv
from .flags import (
    EFAULT, EINVAL, EPERM, ENODEV, ENOMEM, FTRACE_DISABLE_CALLS, FTRACE_FL_DISABLED, FTRACE_FL_ENABLED, FTRACE_FL_REGS,
    FTRACE_FL_REGS_EN, FTRACE_FL_TRAMP, FTRACE_FL_TRAMP_EN, FTRACE_OPS_FL_ADDING, FTRACE_OPS_FL_DELETED,
    FTRACE_OPS_FL_DYNAMIC, FTRACE_OPS_FL_ENABLED, FTRACE_OPS_FL_REMOVING, FTRACE_OPS_FL_SAVE_REGS, FTRACE_REF_MAX,
    FTRACE_START_FUNC_RET, FTRACE_STOP_FUNC_RET, FTRACE_UPDATE_CALLS, FTRACE_UPDATE_TRACE_FUNC, BugType,
    UpdateAction, ftrace_rec_count,
)
from .hash import FtraceHash
from .kernels import DISABLED_IGNORED_EVERYWHERE, DISABLED_RECORDS, UPDATE_CALLS_ON_CHANGE, kernel_tree
from .ops import FtraceOps
from .records import ENTRIES_PER_PAGE, DynFtrace, FtracePage, RecordTable, allocate_pages

_BUG_TYPES = {UpdateAction.MAKE_CALL: BugType.CALL, UpdateAction.MAKE_NOP: BugType.NOP,
              UpdateAction.MODIFY_CALL: BugType.UPDATE}

Gen = Generator[object, None, int]


class Ftrace:
    def __init__(self, arch: ArchX86, env: KernelEnv, variant: str = "fixed"):
        self.kernel = kernel_tree(variant)
        self.arch = arch
        self.env = env
        self.variant = variant
        self._warned_once: set[str] = set()
        self.records = RecordTable()
        self.ops_list: list[FtraceOps] = []
        self.ftrace_disabled = False
        #: The kernel.ftrace_enabled sysctl's int (ftrace_core.ftrace_enabled) and the truth
        #: of it that ftrace_enable_sysctl() last acted on.
        self.ftrace_enabled: int = True
        self.last_ftrace_enabled = True
        self.ftrace_start_up = 0
        stub = arch.addrs.ftrace_stub
        self.ftrace_trace_function = stub
        self.saved_ftrace_func = stub
        self.function_trace_op: FtraceOps | None = None
        self.ftrace_lock = Lock("ftrace_lock")
        self.bug_type = BugType.UNKNOWN
        self.bug_report: str | None = None
        #: What killed ftrace: "ftrace_bug()", or the FTRACE_WARN_ON that fired.
        self.killed_by: str | None = None
        self.bug_ip: int | None = None  # the call site ftrace_bug reported
        self.update_tot_cnt = 0
        #: Make every call-site rewrite a point of its own (finer interleaving, slower); the
        #: scenario runner turns it on, plain use rewrites in one pass on the CPU.
        self.record_points = False
        #: How runtime updates rewrite live sites: "breakpoints" (x86, v4.4-v4.8.17), "direct" (the
        #: generic ftrace_replace_code, one verified 5-byte write per site) or "naive" (byte by
        #: byte, to show what breakpoints prevent).
        self.patching = "breakpoints"
        self.modifying_ftrace_code = 0  # ftrace_int3_handler acts only while this is set
        #: Bumped whenever what is traced may change (ops registered or not, filters, the
        #: kill): a call that straddles a change may rightly go either way.
        self.generation = 0
        self.bug_preamble = ""  # a line printed before ftrace_bug's (the failed pass)
        #: Code updates in progress (between RW-prepare and RO-post-process).
        self.updating = 0
        self.tracker = None  # an emu.footprint.Tracker while the explorer records steps
        # Observers of record-level events (the timeline): fn(event, rec, detail).
        self.listeners: list[Callable[[str, DynFtrace, str], None]] = []
        #: set_ftrace_pid's state (ftrace_core.pid), which __register_ftrace_function() asks
        #: whether an ops must be called through ftrace_pid_func; None before tracefs exists.
        self.pids = None

    # -- helpers --------------------------------------------------------------------------
    def touch_disabled(self, write: bool = False) -> None:
        """ftrace_disabled is read without ftrace_lock on some paths, as in the kernel: tell
        the explorer's tracker, if any, about each such access."""
        if self.tracker is not None:
            self.tracker.touch(("ftrace_disabled",), write)

    def emit(self, event: str, rec: DynFtrace, detail: str = "") -> None:
        """Tell the listeners (the timeline) what happened to a record."""
        for listener in list(self.listeners):
            listener(event, rec, detail)

    # The kernel's warnings.  `where` is "function: condition", as the C source has them.
    def ftrace_warn_on(self, condition: bool, where: str) -> bool:
        """FTRACE_WARN_ON(): a WARN and ftrace_kill()."""
        if self.warn_on(condition, where):
            self._warn_kill("FTRACE_WARN_ON", where)
        return condition

    def ftrace_warn_on_once(self, condition: bool, where: str) -> bool:
        """FTRACE_WARN_ON_ONCE(): the WARN is printed once per site, but ftrace_kill() runs
        every time the condition holds."""
        if self.warn_on(condition, where, once=True):
            self._warn_kill("FTRACE_WARN_ON_ONCE", where)
        return condition

    def warn_on(self, condition: bool, where: str, once: bool = False) -> bool:
        """WARN_ON() / WARN_ON_ONCE(): a WARN, and nothing else: ftrace lives on."""
        if condition and not (once and where in self._warned_once):
            self._warned_once.add(where)
            self.env.warn(where.split(":")[0])
        return condition

    def _warn_kill(self, macro: str, where: str) -> None:
        func, _, cond = where.partition(": ")
        if self.killed_by is None:
            self.killed_by = f"{macro}({cond}) in {func}()"
            self.bug_report = ""  # what the kernel printed after the WARN follows (pr_warn lines)
        self.ftrace_kill()

    def ftrace_kill(self) -> None:
        """ftrace_kill(): disabled until reboot; the trace function becomes the stub."""
        self.touch_disabled(write=True)
        self.generation += 1
        self.ftrace_disabled = True
        self.ftrace_enabled = False
        self.ftrace_trace_function = self.arch.addrs.ftrace_stub

    def ftrace_bug(self, failed: int, rec: DynFtrace | None) -> None:
        """ftrace_bug(): report the failed site the kernel's way, then kill ftrace."""
        lines = bug.format_ftrace_bug(failed, rec, self.bug_type, self.arch.ftrace_expected,
                                      self._read_site, self.env.format_ip, self.ftrace_get_addr_curr)
        # Each case of the switch opens with its own FTRACE_WARN_ON_ONCE(1).
        self.warn_on(True, f"ftrace_bug: 1 (case {failed if failed in (-EFAULT, -EINVAL, -EPERM) else 'default'})",
                     once=True)
        for line in lines:
            self.env.printk(line)
        self.bug_report = self.bug_preamble + "".join(lines)
        self.killed_by = "ftrace_bug()"
        self.bug_preamble = ""
        self.bug_ip = rec.ip if rec is not None else None
        if rec is not None:
            self.emit("bug", rec, lines[0].split(" [<")[0])
        self.ftrace_kill()

    def _read_site(self, ip: int) -> bytes | None:
        try:
            return self.arch.text.read(ip, 5)
        except Exception:
            return None

    # -- hashes and reference counts -------------------------------------------------------
    def __ftrace_hash_rec_update(self, ops: FtraceOps, filter_hash: bool, inc: bool) -> bool:
        """__ftrace_hash_rec_update(): add or drop ops' reference on every record it selects.

        With filter_hash false it works from the notrace hash, with inc inverted: records in
        notrace lose (or regain) this ops' reference.  From v4.6 it returns whether any
        record's site must change, which ftrace_startup()/ftrace_shutdown() then base
        FTRACE_UPDATE_CALLS on; before (v4.5 and older), callers ignore it."""
        if not ops.flags & FTRACE_OPS_FL_ENABLED:
            return False
        all_recs = False
        if filter_hash:
            hash_, other = ops.filter_hash, ops.notrace_hash
            if hash_.empty:
                all_recs = True
        else:
            inc = not inc
            hash_, other = ops.notrace_hash, ops.filter_hash
            if hash_.empty:
                return False
        update = False
        count = 0
        for rec in self.records:
            if rec.flags & FTRACE_FL_DISABLED:
                continue
            if all_recs:
                match = rec.ip not in other
            else:
                in_hash, in_other = rec.ip in hash_, rec.ip in other
                if filter_hash:
                    match = in_hash and not in_other
                else:
                    match = in_hash and (in_other or other.empty)
            if not match:
                continue
            count += 1
            if inc:
                rec.flags += 1
                if self.ftrace_warn_on(ftrace_rec_count(rec.flags) == FTRACE_REF_MAX,
                                       "__ftrace_hash_rec_update: ftrace_rec_count(rec) == FTRACE_REF_MAX"):
                    return update
                if ops.flags & FTRACE_OPS_FL_SAVE_REGS:
                    rec.flags |= FTRACE_FL_REGS
                if ftrace_rec_count(rec.flags) == 1 and ops.trampoline:
                    rec.flags |= FTRACE_FL_TRAMP
                else:
                    rec.flags &= ~FTRACE_FL_TRAMP
            else:
                if self.ftrace_warn_on(ftrace_rec_count(rec.flags) == 0,
                                       "__ftrace_hash_rec_update: ftrace_rec_count(rec) == 0"):
                    return update
                rec.flags -= 1
                if ops.flags & FTRACE_OPS_FL_SAVE_REGS and rec.flags & FTRACE_FL_REGS:
                    if ftrace_rec_count(rec.flags) == 0 or not self._rec_ops_need_regs(rec):
                        rec.flags &= ~FTRACE_FL_REGS
                rec.flags &= ~FTRACE_FL_TRAMP  # always cleared, re-derived below (v4.5-v4.8.17)
                if ftrace_rec_count(rec.flags) == 1 and self._find_tramp_ops_any(rec) is not None:
                    rec.flags |= FTRACE_FL_TRAMP
            # v4.6: "Must match FTRACE_UPDATE_CALLS in ftrace_modify_all_code()".
            update = update or self.ftrace_test_record(rec, True) != UpdateAction.IGNORE
            if not all_recs and count == len(hash_):
                break
        return update

    def ftrace_hash_rec_enable(self, ops: FtraceOps, filter_hash: bool = True) -> bool:
        return self.__ftrace_hash_rec_update(ops, filter_hash, True)

    def ftrace_hash_rec_disable(self, ops: FtraceOps, filter_hash: bool = True) -> bool:
        return self.__ftrace_hash_rec_update(ops, filter_hash, False)

    def _ops_selects(self, ops: FtraceOps, ip: int) -> bool:
        return (ops.filter_hash.empty or ip in ops.filter_hash) and ip not in ops.notrace_hash

    def _rec_ops_need_regs(self, rec: DynFtrace) -> bool:
        return any(o.enabled and o.flags & FTRACE_OPS_FL_SAVE_REGS and self._ops_selects(o, rec.ip)
                   for o in self.ops_list)

    def _find_tramp_ops_any(self, rec: DynFtrace) -> FtraceOps | None:
        return next((o for o in self.ops_list if o.trampoline and self._ops_selects(o, rec.ip)), None)

    def ops_references_rec(self, ops: FtraceOps, rec: DynFtrace) -> bool:
        """ops_references_rec(): would this enabled ops trace rec?

        The seed commit changed the answer for an ops tracing everything from 0 to 1: before
        it, ftrace_update_code counted such ops separately ("ref")."""
        if not ops.enabled:
            return False
        if ops.traces_mod():
            # b7ffffbb46f2: "If ops traces all then it includes this function" (was 0, and
            # ftrace_update_code() counted such ops apart).
            return 1 if self.kernel.has(DISABLED_RECORDS) else 0
        if not ops.filter_hash.empty and rec.ip not in ops.filter_hash:
            return False
        if rec.ip in ops.notrace_hash:
            return False
        return True

    def referenced_filters(self, rec: DynFtrace) -> int:
        """referenced_filters(): how many registered ops reference rec."""
        return sum(1 for ops in self.ops_list if self.ops_references_rec(ops, rec))

    # -- deciding and applying ---------------------------------------------------------------
    def ftrace_check_record(self, rec: DynFtrace, enable: bool, update: bool) -> UpdateAction:
        """ftrace_check_record(): what rec's site must become; with update, commit the flags."""
        self.bug_type = BugType.UNKNOWN
        if rec.flags & FTRACE_FL_DISABLED:
            return UpdateAction.IGNORE
        flag = 0
        if enable and ftrace_rec_count(rec.flags):
            flag = FTRACE_FL_ENABLED
        if flag:
            if bool(rec.flags & FTRACE_FL_REGS) != bool(rec.flags & FTRACE_FL_REGS_EN):
                flag |= FTRACE_FL_REGS
            if bool(rec.flags & FTRACE_FL_TRAMP) != bool(rec.flags & FTRACE_FL_TRAMP_EN):
                flag |= FTRACE_FL_TRAMP
        if (rec.flags & FTRACE_FL_ENABLED) == flag:
            return UpdateAction.IGNORE
        if flag:
            flag ^= rec.flags & FTRACE_FL_ENABLED
            if update:
                rec.flags |= FTRACE_FL_ENABLED
                if flag & FTRACE_FL_REGS:
                    rec.flags = (rec.flags | FTRACE_FL_REGS_EN) if rec.flags & FTRACE_FL_REGS \
                        else (rec.flags & ~FTRACE_FL_REGS_EN)
                if flag & FTRACE_FL_TRAMP:
                    rec.flags = (rec.flags | FTRACE_FL_TRAMP_EN) if rec.flags & FTRACE_FL_TRAMP \
                        else (rec.flags & ~FTRACE_FL_TRAMP_EN)
            if flag & FTRACE_FL_ENABLED:
                self.bug_type = BugType.CALL
                return UpdateAction.MAKE_CALL
            self.bug_type = BugType.UPDATE
            return UpdateAction.MODIFY_CALL
        if update:
            if not ftrace_rec_count(rec.flags):
                rec.flags = 0
            else:
                rec.flags &= ~(FTRACE_FL_ENABLED | FTRACE_FL_TRAMP_EN | FTRACE_FL_REGS_EN)
        self.bug_type = BugType.NOP
        return UpdateAction.MAKE_NOP

    def ftrace_update_record(self, rec: DynFtrace, enable: bool) -> UpdateAction:
        return self.ftrace_check_record(rec, enable, True)

    def ftrace_update_records(self, recs: Iterable[DynFtrace], enable: bool) -> None:
        """ftrace_update_record() on each rec.  The new flags are a function of the old ones,
        so each distinct value is worked out once."""
        updated: dict[int, int] = {}
        for rec in recs:
            old = rec.flags
            if old in updated:
                rec.flags = updated[old]
            else:
                self.ftrace_update_record(rec, enable)
                updated[old] = rec.flags

    def ftrace_test_record(self, rec: DynFtrace, enable: bool) -> UpdateAction:
        return self.ftrace_check_record(rec, enable, False)

    def ftrace_get_addr_new(self, rec: DynFtrace) -> int:
        """Where the site should call: an ops trampoline, or ftrace_caller."""
        if rec.flags & FTRACE_FL_TRAMP:
            ops = self._find_tramp_ops_any(rec)
            if ops is None:
                self.env.printk(f"Bad trampoline accounting at: {rec.ip:x} ({self.env.format_ip(rec.ip)})\n")
                return self.arch.addrs.ftrace_caller
            return ops.trampoline
        return self.arch.addrs.ftrace_caller  # REGS: no separate regs caller on this machine

    def ftrace_get_addr_curr(self, rec: DynFtrace) -> int:
        if rec.flags & FTRACE_FL_TRAMP_EN:
            ops = self._find_tramp_ops_any(rec)
            if ops is not None:
                return ops.trampoline
        return self.arch.addrs.ftrace_caller

    def plan_record(self, rec: DynFtrace, enable: bool) -> tuple[UpdateAction, int, int]:
        """The decision for rec as plain data: (action, new target, current target)."""
        return self.ftrace_test_record(rec, enable), self.ftrace_get_addr_new(rec), self.ftrace_get_addr_curr(rec)

    def __ftrace_replace_code(self, rec: DynFtrace, enable: bool) -> int:
        """__ftrace_replace_code(): commit rec's flags and rewrite its site; 0 or -errno."""
        new_addr = self.ftrace_get_addr_new(rec)
        old_addr = self.ftrace_get_addr_curr(rec)
        action = self.ftrace_update_record(rec, enable)
        self.bug_type = BugType.UNKNOWN
        if action == UpdateAction.IGNORE:
            return 0
        if action == UpdateAction.MAKE_CALL:
            self.bug_type = BugType.CALL
            ret = self.arch.ftrace_make_call(rec.ip, new_addr)
        elif action == UpdateAction.MAKE_NOP:
            self.bug_type = BugType.NOP
            make_nop = self.arch.generic_make_nop if self.patching == "direct" else self.arch.ftrace_make_nop
            ret = make_nop(rec.ip, old_addr)
        else:
            self.bug_type = BugType.UPDATE
            modify = self.arch.generic_modify_call if self.patching == "direct" else self.arch.ftrace_modify_call
            ret = modify(rec.ip, old_addr, new_addr)
        self.emit("fault" if ret else action.name.lower(), rec, f"{ret}" if ret else "")
        return ret

    def replace_code_one(self, rec: DynFtrace, enable: bool) -> int:
        """Public entry for module.py: __ftrace_replace_code on one record."""
        return self.__ftrace_replace_code(rec, enable)

    def ftrace_replace_code(self, enable: bool) -> Iterator[object]:
        """ftrace_replace_code(): rewrite every record that needs it; stop at the first failure.

        With record_points, each rewrite is a point of its own (another CPU may run between
        two of them); otherwise the decisions are made in the same order and the writes land
        in one pass on the CPU, leaving records, text and any failure exactly as the
        record-by-record loop would."""
        if self.ftrace_disabled:
            return
        if self.patching == "breakpoints":
            yield from x86_replace_code(self, enable)
            return
        if self.patching == "naive":
            yield from naive_replace_code(self, enable)
            return
        if not self.record_points:
            yield from self._replace_code_batched(enable)
            return
        for rec in self.records:
            if rec.flags & FTRACE_FL_DISABLED:
                self.emit("skip_disabled", rec)
                continue
            if self.ftrace_test_record(rec, enable) == UpdateAction.IGNORE:
                continue
            yield Point("ftrace_replace_code", f"{rec.ip:#x}")
            failed = self.__ftrace_replace_code(rec, enable)
            if failed:
                self.ftrace_bug(failed, rec)
                return

    def plan_rewrites(self, enable: bool, report_skipped: bool = True) -> list[tuple]:
        """Every record whose site must change, in record order, as (rec, action, expected
        bytes, new bytes); DISABLED records are skipped (and told to the listeners)."""
        plan = []
        # The decision depends on the record's flags alone unless a trampoline is involved
        # (then on which ops holds the ip), so each distinct value is worked out once.
        decided: dict[int, tuple[UpdateAction, int, int]] = {}
        for rec in self.records:
            flags = rec.flags
            if flags & FTRACE_FL_DISABLED:
                if report_skipped:
                    self.emit("skip_disabled", rec)
                continue
            if flags & (FTRACE_FL_TRAMP | FTRACE_FL_TRAMP_EN):
                action, new_addr, cur_addr = self.plan_record(rec, enable)
            else:
                if flags not in decided:
                    decided[flags] = self.plan_record(rec, enable)
                action, new_addr, cur_addr = decided[flags]
            if action != UpdateAction.IGNORE:
                old, new = self.arch.site_bytes(rec.ip, action, new_addr, cur_addr)
                plan.append((rec, action, old, new))
        return plan

    def _replace_code_batched(self, enable: bool) -> Iterator[object]:
        plan = self.plan_rewrites(enable)
        done, failed = self.arch.ftrace_modify_code_batch([(rec.ip, old, new) for rec, _, old, new in plan])
        self.ftrace_update_records((rec for rec, _, _, _ in plan[:done]), enable)
        for rec, action, _, _ in plan[:done]:
            self.emit(action.name.lower(), rec)
        if failed:
            rec, action = plan[done][0], plan[done][1]
            self.ftrace_update_record(rec, enable)
            self.bug_type = _BUG_TYPES[action]
            self.emit("fault", rec, str(failed))
            self.ftrace_bug(failed, rec)
        yield Point("ftrace_replace_code", f"{done} call sites")

    def ftrace_modify_all_code(self, command: int) -> Iterator[object]:
        """ftrace_modify_all_code(): the trace function, then the call sites, then the final
        trace function."""
        update = command & FTRACE_UPDATE_TRACE_FUNC
        list_func = self.arch.addrs.ftrace_ops_list_func
        if update:
            err = self.arch.ftrace_update_ftrace_func(list_func)
            if self.ftrace_warn_on(err != 0, "ftrace_modify_all_code: err"):
                return
        if command & FTRACE_UPDATE_CALLS:
            yield from self.ftrace_replace_code(True)
        elif command & FTRACE_DISABLE_CALLS:
            yield from self.ftrace_replace_code(False)
        if update and self.ftrace_trace_function != list_func:
            err = self.arch.ftrace_update_ftrace_func(self.ftrace_trace_function)
            self.ftrace_warn_on(err != 0, "ftrace_modify_all_code: err")
        if command & FTRACE_START_FUNC_RET:
            err = self.arch.ftrace_enable_ftrace_graph_caller()
            self.ftrace_warn_on(err != 0, "ftrace_modify_all_code: err")
        elif command & FTRACE_STOP_FUNC_RET:
            err = self.arch.ftrace_disable_ftrace_graph_caller()
            self.ftrace_warn_on(err != 0, "ftrace_modify_all_code: err")

    def ftrace_run_update_code(self, command: int) -> Iterator[object]:
        """ftrace_run_update_code(): text RW, update, text RO."""
        self.updating += 1
        try:
            yield from self.arch.ftrace_arch_code_modify_prepare()
            yield Point("ftrace_arch_code_modify_prepare", "text is writable")
            # arch_ftrace_update_code(): int3s met meanwhile belong to ftrace.
            self.modifying_ftrace_code += 1
            self.arch.breakpoints = self.patching == "breakpoints"
            try:
                yield from self.ftrace_modify_all_code(command)
            finally:
                self.modifying_ftrace_code -= 1
            yield from self.arch.ftrace_arch_code_modify_post_process()
        finally:
            self.updating -= 1
        yield Point("ftrace_arch_code_modify_post_process", "text is read-only")

    # -- ops registration -----------------------------------------------------------------------
    def update_ftrace_function(self) -> None:
        """update_ftrace_function(): one ops calls its func directly (unless it is DYNAMIC:
        ftrace_ops_get_list_func() sends those through the list), several go through
        ftrace_ops_list_func, none through the stub."""
        if not self.ops_list:
            func, op = self.arch.addrs.ftrace_stub, None
        elif len(self.ops_list) == 1 and not self.ops_list[0].flags & FTRACE_OPS_FL_DYNAMIC:
            func, op = self.ops_list[0].func, self.ops_list[0]
        else:
            func, op = self.arch.addrs.ftrace_ops_list_func, None
        self.function_trace_op = op
        self.ftrace_trace_function = func
        self.generation += 1

    def ftrace_startup_enable(self, command: int) -> Iterator[object]:
        if self.saved_ftrace_func != self.ftrace_trace_function:
            self.saved_ftrace_func = self.ftrace_trace_function
            command |= FTRACE_UPDATE_TRACE_FUNC
        if not command or not self.ftrace_enabled:
            return
        yield from self.ftrace_run_update_code(command)

    def ftrace_startup(self, ops: FtraceOps, command: int) -> Gen:
        """ftrace_startup(): register ops, take its references, update the code.  Caller
        holds ftrace_lock."""
        if self.ftrace_disabled:
            return -ENODEV
        if ops.flags & FTRACE_OPS_FL_DELETED:
            return -EINVAL
        if ops.flags & FTRACE_OPS_FL_ENABLED or ops in self.ops_list:
            return -16  # -EBUSY
        self.ops_list.insert(0, ops)  # add_ftrace_ops() adds at the head
        if self.pids is not None:  # __register_ftrace_function(): saved_func, maybe ftrace_pid_func
            self.pids.ops_registered(ops)
        if self.ftrace_enabled:  # __register_ftrace_function()
            self.update_ftrace_function()
        self.ftrace_start_up += 1
        ops.flags |= FTRACE_OPS_FL_ENABLED | FTRACE_OPS_FL_ADDING
        changed = self.ftrace_hash_rec_enable(ops, True)
        if changed or not self.kernel.has(UPDATE_CALLS_ON_CHANGE):
            command |= FTRACE_UPDATE_CALLS
        yield from self.ftrace_startup_enable(command)
        ops.flags &= ~FTRACE_OPS_FL_ADDING
        self.generation += 1
        return 0

    def ftrace_shutdown(self, ops: FtraceOps, command: int) -> Gen:
        """ftrace_shutdown(): drop ops' references, unregister, update the code."""
        if self.ftrace_disabled:
            return -ENODEV
        if ops not in self.ops_list:
            return -EINVAL
        self.ops_list.remove(ops)
        if self.ftrace_enabled:  # __unregister_ftrace_function()
            self.update_ftrace_function()
        if self.pids is not None:  # __unregister_ftrace_function(): ops->func = ops->saved_func
            self.pids.ops_unregistered(ops)
        self.ftrace_start_up -= 1
        # "Just warn in case of unbalance, no need to kill ftrace".
        self.warn_on(self.ftrace_start_up < 0, "ftrace_shutdown: ftrace_start_up < 0", once=True)
        changed = self.ftrace_hash_rec_disable(ops, True)
        ops.flags &= ~FTRACE_OPS_FL_ENABLED
        if changed or not self.kernel.has(UPDATE_CALLS_ON_CHANGE):
            command |= FTRACE_UPDATE_CALLS
        if self.saved_ftrace_func != self.ftrace_trace_function:
            self.saved_ftrace_func = self.ftrace_trace_function
            command |= FTRACE_UPDATE_TRACE_FUNC
        if not command or not self.ftrace_enabled:
            return 0
        ops.flags |= FTRACE_OPS_FL_REMOVING
        yield from self.ftrace_run_update_code(command)
        if not self.ops_list:
            # The sanity check: with no ops left every record's flags must be clear.  Up to
            # v4.7 that includes FTRACE_FL_DISABLED, so a loading module's records kill ftrace
            # here; v4.8 masks it out.
            fixed = self.kernel.has(DISABLED_IGNORED_EVERYWHERE)
            mask = ~FTRACE_FL_DISABLED if fixed else ~0
            where = "ftrace_shutdown: " + ("rec->flags & ~FTRACE_FL_DISABLED" if fixed else "rec->flags")
            for rec in self.records:
                if self.ftrace_warn_on_once(bool(rec.flags & mask), where):
                    line = f"  {self.env.format_ip(rec.ip)} flags:{rec.flags:x}\n"  # pr_warn("  %pS flags:%lx\n")
                    self.env.printk(line)
                    if self.killed_by and self.killed_by.endswith("in ftrace_shutdown()"):
                        self.bug_report += line
        ops.flags &= ~FTRACE_OPS_FL_REMOVING
        return 0

    def register_ftrace_function(self, ops: FtraceOps, command: int = 0) -> Gen:
        """register_ftrace_function(): ftrace_startup under ftrace_lock.  With
        FTRACE_START_FUNC_RET it is register_ftrace_graph()."""
        yield from self.ftrace_lock.acquire()
        try:
            return (yield from self.ftrace_startup(ops, command))
        finally:
            self.ftrace_lock.release()

    def unregister_ftrace_function(self, ops: FtraceOps, command: int = 0) -> Gen:
        yield from self.ftrace_lock.acquire()
        try:
            return (yield from self.ftrace_shutdown(ops, command))
        finally:
            self.ftrace_lock.release()

    def ftrace_hash_move_and_update_ops(self, ops: FtraceOps, filter_hash: bool, new: FtraceHash) -> Gen:
        """Swap in a new filter (or notrace) hash: drop the old references, take the new ones,
        and rewrite the sites if ops is enabled (ftrace_hash_move + ftrace_ops_update_code).
        Registered ops sharing ops' hashes (graph_ops, func_hash) move with it, as
        ftrace_hash_rec_update_modify() does (v4.5-v4.8.17).  Caller holds ftrace_lock."""
        if self.ftrace_disabled:
            return -ENODEV
        self.generation += 1
        sharing = [op for op in self.ops_list if op is not ops and op.func_hash is ops]
        for op in (ops, *sharing):
            self.__ftrace_hash_rec_update(op, filter_hash, False)
        new = new.copy()
        for op in (ops, *sharing):
            if filter_hash:
                op.filter_hash = new
            else:
                op.notrace_hash = new
        for op in (ops, *sharing):
            self.__ftrace_hash_rec_update(op, filter_hash, True)
        if (ops.enabled or any(op.enabled for op in sharing)) and self.ftrace_enabled:
            yield from self.ftrace_run_update_code(FTRACE_UPDATE_CALLS)
        return 0

    # -- creating records ------------------------------------------------------------------------
    def ftrace_process_locs(self, mod: object | None, locs: list[int]) -> Gen:
        """ftrace_process_locs(): sort the call sites, give them records on new pages (the
        core's first, a module's appended), then ftrace_update_code()."""
        if not locs:
            return 0
        locs = sorted(locs)
        new_pages = allocate_pages(len(locs))
        if not new_pages:
            return -ENOMEM
        yield from self.ftrace_lock.acquire()
        try:
            if mod is None:
                self.warn_on(bool(self.records.pages), "ftrace_process_locs: ftrace_pages || ftrace_pages_start")
            elif not self.records.pages:
                return 0
            pg_iter = iter(new_pages)
            pg = next(pg_iter)
            for addr in locs:
                if not addr:
                    continue
                if pg.index == pg.capacity:
                    pg = next(pg_iter)
                pg.records.append(DynFtrace(addr, 0))
            used = [p for p in new_pages if p.records]
            self.records.pages.extend(used)
            yield Point("ftrace_update_code", f"{sum(p.index for p in used)} records")
            self.ftrace_update_code(mod, used)
            return 0
        finally:
            self.ftrace_lock.release()

    def ftrace_update_code(self, mod: object | None, new_pages: list[FtracePage]) -> int:
        """ftrace_update_code(): every new site becomes the nop.

        Module records are created DISABLED (the seed commit) so that no update touches them
        until ftrace_module_enable().  Before it (legacy), the records were counted against
        the enabled ops and enabled right here, while the module was still being formed."""
        legacy = not self.kernel.has(DISABLED_RECORDS)
        legacy_ref, legacy_test = 0, False
        if mod is not None and legacy:
            for ops in self.ops_list:
                if ops.enabled:
                    if ops.traces_mod():
                        legacy_ref += 1
                    else:
                        legacy_test = True
        rec_flags = FTRACE_FL_DISABLED if mod is not None and not legacy else 0
        if self.ftrace_disabled:
            return -1
        recs = [rec for pg in new_pages for rec in pg.records]
        mcount = self.arch.addrs.mcount
        # ftrace_code_disable() on each: `call __fentry__` -> nop, verified, written in one pass.
        done, failed = self.arch.ftrace_modify_code_batch(
            [(rec.ip, self.arch.call_bytes(rec.ip, mcount), NOP5) for rec in recs])
        for rec in recs[: done + (1 if failed else 0)]:
            if legacy:
                rec.flags = legacy_ref + (self.referenced_filters(rec) if legacy_test else 0)
            else:
                rec.flags = rec_flags
        for rec in recs[:done]:
            self.emit("added", rec, "DISABLED" if rec.flags & FTRACE_FL_DISABLED else "")
        if failed:
            self.bug_type = BugType.INIT
            self.ftrace_bug(failed, recs[done])
        self.update_tot_cnt += done
        if legacy and self.ftrace_start_up:
            # Before the seed commit, the module's records were enabled right here.
            for rec in recs[:done]:
                if rec.flags and not self.ftrace_disabled:
                    ret = self.__ftrace_replace_code(rec, True)
                    if ret:
                        self.ftrace_bug(ret, rec)
        return 0

    def ftrace_init(self, locs: list[int]) -> Gen:
        """ftrace_init(): the boot-time conversion of the core's call sites."""
        if not locs:
            self.env.printk("ftrace: No functions to be traced?\n")
            self.ftrace_disabled = True
            return 0
        self.env.printk(f"ftrace: allocating {len(locs)} entries in {len(locs) // ENTRIES_PER_PAGE + 1} pages\n")
        self.last_ftrace_enabled = self.ftrace_enabled = True
        return (yield from self.ftrace_process_locs(None, locs))
