"""The invariants of DESIGN.md section 6, checked after a run from independent evidence:
guest memory read back and disassembled, page protections read from Unicorn, reference
counts recomputed from the ops' hashes, and every function entry observed by an execution
hook (not by the tracer) compared with what the trace recorded.  verdict_key() says what
the verdict depends on, for an explorer that checks once per distinct final state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from unicorn import unicorn_const as uc_const
from unicorn.x86_const import UC_X86_REG_RSP

from emu.errors import MemoryAccessError
from emu.modules import ModuleState

from .arch_x86 import NOP5
from .flags import FTRACE_FL_DISABLED, FTRACE_FL_ENABLED, FTRACE_OPS_FL_ADDING, FTRACE_OPS_FL_REMOVING, ftrace_rec_count
from .hash import hash_contains_ip

INVARIANTS = ("ftrace_alive", "ref_counts", "call_sites", "text_read_only", "calls_traced", "no_oops", "no_deadlock")

_md = Cs(CS_ARCH_X86, CS_MODE_64)


@dataclass
class CallAudit:
    """Ground truth for "every enabled function, when called, is traced once, with its
    parent": an execution hook on every call site sees each function entry; a call counts
    when the function tracer is on, selects the function, and no code update is under way.

    The hooks are block hooks: a call always starts a translated block at its target, and
    block hooks stay out of the list Unicorn walks for every instruction while it counts
    instructions for time slices (173 code hooks made each guest instruction cost ~1 us)."""

    system: object
    hooks: dict = field(default_factory=dict)  # ip -> HookHandle
    expected: dict = field(default_factory=dict)  # cpu -> (ip, parent) awaiting its trace entry
    missed: list = field(default_factory=list)  # (cpu, ip, parent) never traced
    extra: list = field(default_factory=list)  # traced twice for one entry
    counted: int = 0

    def install(self) -> None:
        s = self.system
        for rec in s.ftrace.records:
            self._hook(rec.ip)
        s.kernel.machine.uc.ctl_flush_tb()  # code that already ran must see the new hooks
        s.kernel.modules.hooks.formed.append(self._module_formed)
        s.kernel.modules.hooks.going.append(self._module_going)
        s.tracer.audit = self
        s.graph.audit = self  # function_graph records the entries then

    def _hook(self, ip: int) -> None:
        if ip not in self.hooks:
            self.hooks[ip] = self.system.kernel.machine.hooks.add(uc_const.UC_HOOK_BLOCK, self._on_entry, ip, ip,
                                                                  tag="audit")

    def _module_formed(self, mod):
        for ip in mod.mcount_locs:
            self._hook(ip)
        yield from ()

    def _module_going(self, mod):
        for ip in mod.mcount_locs:
            handle = self.hooks.pop(ip, None)
            if handle is not None:
                self.system.kernel.machine.hooks.remove(handle)
        yield from ()

    def _counting(self, ip: int) -> bool:
        s = self.system
        ops, ftrace = s.global_ops, s.ftrace
        return (ops in ftrace.ops_list and ops.enabled and not ops.flags & (FTRACE_OPS_FL_ADDING | FTRACE_OPS_FL_REMOVING)
                and ftrace.updating == 0 and s.tracer.tracing_on and ftrace.last_ftrace_enabled
                and hash_contains_ip(ip, ops.filter_hash, ops.notrace_hash))

    def _on_entry(self, uc, address: int, size: int, data: object) -> None:
        cpu = self.system.kernel.machine.running_cpu
        if cpu is None:
            return
        if cpu.resume_rip == address:
            # The same entry, seen again as the slice that stopped on it resumes: judge it
            # now, when it runs, as an instruction hook would.
            pending = self.expected.pop(cpu.index, None)
            if pending is not None and pending[3]:
                self.counted -= 1
        else:
            self.settle(cpu.index)
        cpu.resume_rip = None  # only a slice's first block can be such a repeat
        # Every entry is followed, counted or not: a call entered while an update was under
        # way may be recorded after it ends, and is then neither lost nor traced twice.
        counting = self._counting(address)
        rsp = self.system.kernel.machine.regs.read(UC_X86_REG_RSP)
        parent = int.from_bytes(uc.mem_read(rsp, 8), "little")
        self.expected[cpu.index] = (address, parent, self.system.ftrace.generation, counting)
        if counting:
            self.counted += 1

    def on_traced(self, cpu: int, ip: int, parent: int) -> None:
        """Called by the function tracer for each entry it records."""
        if self.expected.get(cpu, ())[:2] == (ip, parent):
            del self.expected[cpu]
        elif self._counting(ip) and self.expected.get(cpu) is None and ip in self.hooks:
            self.extra.append((cpu, ip, parent))

    def on_declined(self, cpu: int, ip: int, depth: int) -> None:
        """function_graph left a call out (trace_graph_entry() said no): not a loss when the
        graph filters say so.  Checked here from the call's depth on the guest's return
        stack and the filter lists, not taken on the tracer's word."""
        graph = self.system.graph
        filtered = (depth < 0  # under a set_graph_notrace function
                    or ip in graph.notrace_funcs
                    or (depth == 0 and graph.graph_funcs and ip not in graph.graph_funcs)
                    or (graph.max_depth and depth >= graph.max_depth))
        if filtered and self.expected.get(cpu, ())[:1] == (ip,):
            pending = self.expected.pop(cpu)
            if pending[3]:
                self.counted -= 1

    def settle(self, cpu: int) -> None:
        pending = self.expected.pop(cpu, None)
        # Not traced: a loss, unless what is traced changed between the entry and now (the
        # other CPU switched tracing off in between; the kernel leaves that call either way).
        if pending is not None and pending[3] and pending[2] == self.system.ftrace.generation:
            self.missed.append((cpu, pending[0], pending[1]))

    def finish(self) -> None:
        for cpu in list(self.expected):
            self.settle(cpu)


def check(system, audit: CallAudit | None, results=()) -> tuple[dict[str, bool], dict[str, list[str]]]:
    """Evaluate every invariant; returns (name -> holds, name -> what broke it).  results are
    the commands run (scenario.CommandResult): an oops in any breaks no_oops."""
    why: dict[str, list[str]] = {name: [] for name in INVARIANTS}
    ftrace, env = system.ftrace, system.env
    if ftrace.ftrace_disabled:
        lines = (ftrace.bug_report or "").splitlines()
        if not lines:
            why["ftrace_alive"].append(f"ftrace disabled by {ftrace.killed_by or 'ftrace_kill() without a report'}")
        else:
            first = " ".join(lines[:2]) if lines[0].startswith("Failed on ") and len(lines) > 1 else lines[0].strip()
            why["ftrace_alive"].append(f"ftrace disabled by {ftrace.killed_by or 'ftrace_kill()'}: {first}")

    for rec in ftrace.records:
        name = env.format_ip(rec.ip)
        if rec.flags & FTRACE_FL_DISABLED:
            want = 0
        else:
            want = sum(1 for ops in ftrace.ops_list
                       if ops.enabled and hash_contains_ip(rec.ip, ops.filter_hash, ops.notrace_hash))
        enabled = bool(rec.flags & FTRACE_FL_ENABLED)
        # With kernel.ftrace_enabled switched to 0 (last_ftrace_enabled: ftrace_kill() zeroes
        # ftrace_enabled but not this) the counts stay but the sites are nops; only a module
        # loaded meanwhile gets its selected sites enabled (ftrace_module_enable() does not
        # ask ftrace_enabled), so a site may then be enabled only if some ops selects it.
        flags_ok = enabled == (want > 0) if ftrace.last_ftrace_enabled else (not enabled or want > 0)
        if ftrace_rec_count(rec.flags) != want or not flags_ok:
            why["ref_counts"].append(f"{name}: flags {rec.flags:#x}, {want} ops select it")
        try:
            code = system.read(rec.ip, 5)
        except MemoryAccessError:
            # a dead ftrace keeps the records of a module freed since (ftrace_release_mod
            # does nothing once ftrace is disabled), as the kernel does
            why["call_sites"].append(f"{rec.ip:#x}: record of memory no longer mapped")
            continue
        insn = next(_md.disasm(code, rec.ip), None)
        if rec.flags & FTRACE_FL_ENABLED:
            target = ftrace.ftrace_get_addr_curr(rec)
            ok = insn is not None and insn.mnemonic == "call" and int(insn.op_str, 16) == target
            if not ok:
                why["call_sites"].append(f"{name}: enabled but holds {code.hex(' ')}, not a call to {target:#x}")
        elif code != NOP5 or insn is None or insn.mnemonic != "nop":
            why["call_sites"].append(f"{name}: not enabled but holds {code.hex(' ')}, not the 5-byte nop")

    machine = system.kernel.machine
    for seg in system.kernel.segments:
        perms = machine.perms_at(seg.start)
        if perms != seg.perms:
            why["text_read_only"].append(f"{seg.name} is {perms}, should be {seg.perms}")
    for mod in system.kernel.modules.modules:
        if mod.state == ModuleState.UNFORMED:
            continue
        for area in mod.areas:
            perms = machine.perms_at(area.base)
            if perms != area.final:
                why["text_read_only"].append(f"{mod.name} .{area.kind} is {perms}, should be {area.final}")

    for r in results:
        if r.oops:
            why["no_oops"].append(f"CPU {r.cpu}: {r.command}: {r.error}")
        if getattr(r, "stuck", False):
            why["no_deadlock"].append(f"CPU {r.cpu}: {r.error}")
    if audit is not None:
        audit.finish()
        for cpu, ip, parent in audit.missed:
            why["calls_traced"].append(f"CPU {cpu}: call of {env.name_ip(ip)} from {env.name_ip(parent)} not traced")
        for cpu, ip, parent in audit.extra:
            why["calls_traced"].append(f"CPU {cpu}: {env.name_ip(ip)} traced more than once for one call")
    return {name: not why[name] for name in INVARIANTS}, {k: v for k, v in why.items() if v}


def verdict_key(system, audit: CallAudit | None, results, digest: str) -> str:
    """A key for check()'s verdict (the name -> holds dict): two final states with the same
    key get the same verdict, so an explorer may run check() once per key.

    digest is the run's ftrace_core.explore.run.state_digest(), which covers part of what
    check() reads; this adds a fingerprint of the rest.  What each invariant reads, and what
    covers it (D: the digest, K: the fingerprint here):

      ftrace_alive    ftrace_disabled (D, K), bug_report and killed_by (K)
      ref_counts      each record's ip and flags (D); last_ftrace_enabled (K); every ops in
                      ops_list, in order: its flags (enabled) and both hashes (K)
      call_sites      each record's ip and flags, and its 5 bytes or their being unmapped (D);
                      ftrace_get_addr_curr(): the record's flags (D), the ops' trampolines and
                      hashes (K), ftrace_caller (a constant of the booted kernel)
      text_read_only  each kernel segment's wanted and actual protections (K); each module's
                      state and each of its areas' wanted and actual protections (K)
      calls_traced    the audit's missed and extra calls, once finished (K)
      no_oops         each command result's oops flag (K)
      no_deadlock     each command result's stuck flag (K)

    Symbol names (format_ip, name_ip) and the results' errors only word check()'s
    explanations, which a cached verdict does not carry.  A key is only meaningful for one
    booted kernel (its constants are not in it): one cache per prepared system."""
    ftrace, kernel = system.ftrace, system.kernel
    machine = kernel.machine
    if audit is not None:
        audit.finish()  # check() does this first; the calls still pending may be losses
    extras = (
        ftrace.ftrace_disabled, ftrace.bug_report, ftrace.killed_by, ftrace.last_ftrace_enabled,
        # sorted: two hashes holding the same ips are the same however they were filled
        [(ops.flags, ops.trampoline, sorted(ops.filter_hash), sorted(ops.notrace_hash)) for ops in ftrace.ops_list],
        [(seg.start, int(seg.perms), _perm_bits(machine.perms_at(seg.start))) for seg in kernel.segments],
        [(mod.name, mod.state.name, [(a.base, int(a.final), _perm_bits(machine.perms_at(a.base))) for a in mod.areas])
         for mod in kernel.modules.modules],
        None if audit is None else (audit.missed, audit.extra),
        sorted((r.cpu, r.command, bool(r.oops), bool(getattr(r, "stuck", False))) for r in results),
    )
    return f"{digest}:{hashlib.sha256(repr(extras).encode()).hexdigest()[:16]}"


def _perm_bits(perms) -> int:
    """Protections as a number, -1 where nothing is mapped."""
    return -1 if perms is None else int(perms)
