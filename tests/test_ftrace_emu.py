"""The ftrace core on the emulator: real call sites, real protections, the trace."""

from __future__ import annotations

import errno

import fnmatch
from pathlib import Path

import pytest
from capstone import CS_ARCH_X86, CS_MODE_64, Cs

import guest
from emu.cpu import Task
from ftrace_core.errors import FtraceDead, TracefsError
from ftrace_core.system import boot

GOLDEN = Path(__file__).parent / "golden"
md = Cs(CS_ARCH_X86, CS_MODE_64)


@pytest.fixture
def system():
    s = boot("fixed")
    s.cpus[0].set_task(Task("bash", 1042))
    s.cpus[1].set_task(Task("insmod", 2001))
    return s


def _insn(system, ip):
    return next(md.disasm(system.read(ip, 5), ip))


def _trace_lines(system):
    return [l for l in system.tracefs.read("trace").splitlines() if not l.startswith("#")]


def _funcs(listing: str) -> list[str]:
    return [line.split(" (")[0] for line in listing.splitlines()]


def test_boot_converts_every_site_to_the_nop(system):
    assert "ftrace: allocating 164 entries in 1 pages" in system.dmesg()
    for rec in system.ftrace.records:
        insn = _insn(system, rec.ip)
        assert (insn.mnemonic, insn.size, system.read(rec.ip, 5)) == ("nop", 5, bytes.fromhex("0f1f440000"))


def test_function_tracer_turns_every_site_into_a_call_to_the_trampoline_and_back(system):
    caller = system.symbol("ftrace_caller")
    system.tracefs.write("current_tracer", "function")
    for rec in system.ftrace.records:
        insn = _insn(system, rec.ip)
        assert insn.mnemonic == "call" and int(insn.op_str, 16) == caller
    call_site = _insn(system, system.symbol("ftrace_call"))
    assert int(call_site.op_str, 16) == system.symbol("function_trace_call")
    text = system.kernel.segments[0]
    assert str(system.kernel.machine.perms_at(text.start)) == "r-x"  # read-only again
    system.tracefs.write("current_tracer", "nop")
    assert all(_insn(system, r.ip).mnemonic == "nop" for r in system.ftrace.records)
    assert int(_insn(system, system.symbol("ftrace_call")).op_str, 16) == system.symbol("ftrace_stub")


def test_each_traced_call_appears_once_with_parent_and_cpu(system):
    system.tracefs.write("current_tracer", "function")
    system.insmod(guest.module_path("hello"), cpu=1)
    system.tracefs.write("trace", "")
    for _ in range(3):
        system.call("hello_answer", cpu=1)
    lines = _trace_lines(system)
    assert len(lines) == 3
    for line in lines:
        assert line.startswith("          insmod-2001  [001] .... ")
        assert line.endswith(": hello_answer <-guest_return_trap")  # seq_print_sym_short: no [mod]


def test_parents_are_callers_that_were_traced_before(system):
    system.tracefs.write("current_tracer", "function")
    system.call("workload_run", 2, cpu=0)
    entries = system.buffer.entries()
    names = [system.env.name_ip(e.ip) for e in entries]
    seen = set()
    for entry, name in zip(entries, names):
        parent = system.env.name_ip(entry.parent_ip)
        assert parent == "guest_return_trap" or parent in seen, (name, parent)
        seen.add(name)
    # the guest's own count of callback invocations agrees with the host's trace
    seen_guest = int.from_bytes(system.read(system.symbol("ftrace_calls_seen"), 8), "little")
    assert seen_guest == len(entries)


@pytest.mark.parametrize("pattern,selects", [
    # kernel/trace/trace_events_filter.c filter_parse_regex() before v4.10: a leading '*', a
    # trailing '*', both; a '*' after the first character ends the pattern there.
    ("*schedule", lambda f: f.endswith("schedule")),
    ("*schedule*", lambda f: "schedule" in f),
    ("schedule*", lambda f: f.startswith("schedule")),
    ("*d_*lookup", lambda f: "d_" in f),  # MIDDLE_ONLY "d_": "lookup" is never looked at
    ("vfs_*write", lambda f: f.startswith("vfs_")),  # FRONT_ONLY "vfs_"
    ("vfs_read", lambda f: f == "vfs_read"),
])
def test_filter_selects_what_the_kernels_glob_rules_select(system, pattern, selects):
    available = system.tracefs.read("available_filter_functions").splitlines()
    system.tracefs.write("current_tracer", "function")
    system.tracefs.write("set_ftrace_filter", pattern)
    expected = [f for f in available if selects(f)]
    assert expected and system.tracefs.read("set_ftrace_filter").splitlines() == expected
    assert _funcs(system.tracefs.read("enabled_functions")) == expected


@pytest.mark.parametrize("pattern", ["sch?dule", "vfs_[rw]*", "\\vfs_read", "!", "vfs_read:", "vfs_read:nosuch:x"])
def test_a_pattern_the_tree_does_not_know_fails_and_leaves_an_empty_filter(system, pattern):
    """'?', '[' and '\\' are plain characters before v4.10, so these match nothing; '!' alone
    is an empty pattern; 'func:' and unknown commands are -EINVAL (ftrace_process_regex).
    ftrace_regex_open() emptied the hash (O_TRUNC) and ftrace_regex_release() commits it
    anyway: afterwards every function is traced."""
    system.tracefs.write("set_ftrace_filter", "vfs_read")
    with pytest.raises(TracefsError) as info:
        system.tracefs.write("set_ftrace_filter", pattern)
    assert info.value.errno == errno.EINVAL
    assert system.tracefs.read("set_ftrace_filter") == "#### all functions enabled ####\n"


def test_each_write_takes_one_token_and_a_failed_token_keeps_the_earlier_ones(system):
    """trace_get_user() reads one token a write; echo's write loop sends the rest."""
    with pytest.raises(TracefsError, match="'bogus' matches no function"):
        system.tracefs.write("set_ftrace_filter", "vfs_read bogus vfs_write")
    assert system.tracefs.read("set_ftrace_filter") == "vfs_read\n"


def test_a_token_split_across_two_writes_is_joined_and_committed_at_release(system):
    from emu.sched import run_to_completion
    from ftrace_core.tracefs import O_TRUNC, O_WRONLY

    fs = system.tracefs
    handle = run_to_completion(fs.open_steps("set_ftrace_filter", O_WRONLY | O_TRUNC))
    assert run_to_completion(handle.write_steps(b"vfs_")) == 4
    assert run_to_completion(handle.write_steps(b"read vfs_wr")) == 5  # one token: "vfs_read "
    assert run_to_completion(handle.write_steps(b"vfs_wr")) == 6
    assert fs.read("set_ftrace_filter") == "#### all functions enabled ####\n"  # nothing committed yet
    run_to_completion(handle.release_steps())  # "vfs_wr" unterminated: matched as a plain glob
    assert fs.read("set_ftrace_filter") == "vfs_read\n"


def test_filter_append_negate_and_reset(system):
    fs = system.tracefs
    assert fs.read("set_ftrace_filter") == "#### all functions enabled ####\n"
    assert fs.read("set_ftrace_notrace") == "#### no functions disabled ####\n"
    fs.write("set_ftrace_filter", "vfs_read vfs_write")
    fs.write("set_ftrace_filter", "schedule", append=True)
    assert sorted(fs.read("set_ftrace_filter").split()) == ["schedule", "vfs_read", "vfs_write"]
    fs.write("set_ftrace_filter", "!vfs_*", append=True)
    assert fs.read("set_ftrace_filter") == "schedule\n"
    # ftrace_regex_write(): vfs_read is taken, nosuchfunc fails; the release commits the
    # hash the open truncated, with vfs_read in it.
    with pytest.raises(TracefsError, match="'nosuchfunc' matches no function") as info:
        fs.write("set_ftrace_filter", "vfs_read nosuchfunc")
    assert info.value.errno == 22
    assert fs.read("set_ftrace_filter") == "vfs_read\n"
    with pytest.raises(TracefsError, match="no such command") as info:
        fs.write("set_ftrace_filter", "schedule:bogus", append=True)
    assert info.value.errno == 22 and fs.read("set_ftrace_filter") == "vfs_read\n"  # O_APPEND kept it
    fs.write("set_ftrace_filter", "")
    assert fs.read("set_ftrace_filter") == "#### all functions enabled ####\n"


def test_notrace_removes_functions_from_the_trace(system):
    fs = system.tracefs
    fs.write("set_ftrace_notrace", "*schedule* pick_*")
    fs.write("current_tracer", "function")
    enabled = _funcs(fs.read("enabled_functions"))
    available = fs.read("available_filter_functions").splitlines()
    assert enabled == [f for f in available if not (fnmatch.fnmatchcase(f, "*schedule*") or f.startswith("pick_"))]
    system.call("workload_run", 1)
    traced = {system.env.name_ip(e.ip) for e in system.buffer.entries()}
    assert "schedule" not in traced and "__schedule" not in traced and "do_syscall_64" in traced


def test_module_loaded_while_tracing_is_traced_and_listed(system):
    fs = system.tracefs
    fs.write("current_tracer", "function")
    mod = system.insmod(guest.module_path("race_mod"), cpu=1)
    listed = [l for l in fs.read("available_filter_functions").splitlines() if l.endswith(" [race_mod]")]
    assert len(listed) == len(mod.mcount_locs) and "race_mod_compute [race_mod]" in listed
    enabled = [l for l in _funcs(fs.read("enabled_functions")) if l.endswith("[race_mod]")]
    assert enabled == listed
    fs.write("trace", "")
    assert system.call("race_mod_work", 2, cpu=1) == 2 * (3 * 2 + 11) // 2
    traced = [system.env.name_ip(e.ip) for e in system.buffer.entries()]
    assert traced[0] == "race_mod_work [race_mod]"
    assert "race_mod_compute [race_mod]" in traced
    system.rmmod("race_mod", cpu=1)
    assert "[race_mod]" not in fs.read("available_filter_functions")
    assert len(system.ftrace.records) == 164


def test_mod_command_selects_a_modules_functions(system):
    system.insmod(guest.module_path("race_mod"))
    system.insmod(guest.module_path("hello"))
    fs = system.tracefs
    fs.write("set_ftrace_filter", "*:mod:race_mod")
    chosen = fs.read("set_ftrace_filter").splitlines()
    assert chosen and all(l.endswith(" [race_mod]") for l in chosen)
    fs.write("set_ftrace_filter", "hello*:mod:hello")
    assert fs.read("set_ftrace_filter") == "hello_answer [hello]\n"
    fs.write("set_ftrace_filter", "*:mod:!race_mod")  # all but race_mod's, core included
    chosen = fs.read("set_ftrace_filter").splitlines()
    assert "hello_answer [hello]" in chosen and "vfs_read" in chosen
    assert not any(l.endswith(" [race_mod]") for l in chosen)
    fs.write("set_ftrace_filter", "*:mod:!")  # core only
    assert not any(l.endswith("]") for l in fs.read("set_ftrace_filter").splitlines())
    fs.write("set_ftrace_filter", "*:mod:")  # every module
    assert all(l.endswith("]") for l in fs.read("set_ftrace_filter").splitlines())


@pytest.mark.parametrize("patching,flags,preamble", [
    ("direct", "80000001", ""),  # the generic path commits the flags, then writes
    # x86 (arch/x86/kernel/ftrace.c ftrace_replace_code, v4.5-v4.8.17): the int3 pass fails
    # first, and its count is every record the walk met before vfs_read's, untouched or not.
    ("breakpoints", "1", "Failed on adding breakpoints ({count}):\n"),
])
def test_write_to_read_only_text_gives_eperm_report_and_kills_ftrace(system, patching, flags, preamble):
    ftrace = system.ftrace
    ftrace.patching = patching
    rec = next(r for r in ftrace.records if system.env.name_ip(r.ip) == "vfs_read")
    position = [system.env.name_ip(r.ip) for r in ftrace.records].index("vfs_read")
    assert position > 0
    preamble = preamble.format(count=position)
    rec.flags = 1  # one ops wants it, and nothing made the text writable
    list(ftrace.ftrace_replace_code(True))
    dmesg = system.dmesg()
    sym = system.kernel.kallsyms.format(rec.ip)
    assert f"{preamble.rstrip()}" in dmesg
    assert f"ftrace faulted on writing [<{rec.ip:016x}>] {sym}\n" in dmesg
    assert "Setting ftrace call site to call ftrace function\n" in dmesg
    assert f"ftrace record flags: {flags}\n" in dmesg
    assert ftrace.bug_report.startswith(preamble + "ftrace faulted on writing")
    assert dmesg.count("WARNING: CPU: 0 PID: 1042 at kernel/trace/ftrace.c ftrace_bug()\n") == 1
    assert ftrace.ftrace_disabled
    assert system.read(rec.ip, 5) == bytes.fromhex("0f1f440000")
    # After the kill the kernel's function tracer still "starts" (function_trace_init()
    # ignores register_ftrace_function()'s -ENODEV); function_graph's init fails with it, and
    # the filter files no longer open (ftrace_regex_open()).
    system.tracefs.write("current_tracer", "function")
    assert system.tracefs.read("current_tracer") == "function\n"
    with pytest.raises(FtraceDead, match="current_tracer: ftrace is disabled") as info:
        system.tracefs.write("current_tracer", "function_graph")
    assert info.value.errno == 19
    with pytest.raises(FtraceDead, match="set_ftrace_filter: ftrace is disabled") as info:
        system.tracefs.write("set_ftrace_filter", "vfs_read")
    assert info.value.errno == 19
    header = system.tracefs.read("trace").splitlines()
    assert header[2:4] == ["# WARNING: FUNCTION TRACING IS CORRUPTED", "#          MAY BE MISSING FUNCTION EVENTS"]


def test_unexpected_bytes_at_a_site_give_einval_with_the_actual_bytes(system):
    rec = next(r for r in system.ftrace.records if system.env.name_ip(r.ip) == "vfs_write")
    kernel = system.kernel
    kernel.set_kernel_text_rw()
    kernel.text.write(kernel.cpus[0], [(rec.ip, bytes.fromhex("6666669090"))])
    kernel.set_kernel_text_ro()
    system.tracefs.write("current_tracer", "function")
    dmesg = system.dmesg()
    assert "ftrace failed to modify [<" in dmesg
    assert " actual:   66:66:66:90:90\n" in dmesg and " expected: 0f:1f:44:00:00\n" in dmesg
    assert system.ftrace.ftrace_disabled


def test_tracing_on_zero_stops_recording(system):
    system.tracefs.write("current_tracer", "function")
    system.tracefs.write("tracing_on", "0")
    system.call("workload_getpid")
    assert system.buffer.entries_written == 0
    assert system.tracefs.read("tracing_on") == "0\n"


def test_trace_pipe_consumes(system):
    system.tracefs.write("set_ftrace_filter", "get_current_pid")
    system.tracefs.write("current_tracer", "function")
    system.call("workload_getpid")
    first = system.tracefs.read("trace_pipe")
    assert first.count("get_current_pid <-__x64_sys_getpid") == 1
    assert system.tracefs.read("trace_pipe") == ""


def _golden_run() -> str:
    s = boot("fixed")
    s.cpus[0].set_task(Task("bash", 1042))
    s.cpus[1].set_task(Task("kworker/1:1", 27))
    s.tracefs.write("set_ftrace_notrace", "local_clock")
    s.tracefs.write("current_tracer", "function")
    s.call("workload_getpid", cpu=0)
    s.call("workload_fs_roundtrip", 8, cpu=1)
    return s.tracefs.read("trace")


def test_golden_trace_is_byte_identical_run_to_run():
    first = _golden_run()
    assert _golden_run() == first
    golden = GOLDEN / "trace_workload.txt"
    assert first == golden.read_text()


def test_python_api_alloc_write_read_and_errors(system):
    import ftrace_core
    from emu.errors import MemoryAccessError, ModuleLoadError, SymbolError

    assert ftrace_core.boot is boot
    addr = system.alloc(64)
    system.write(addr, b"hello, guest\0")
    assert system.read(addr, 5) == b"hello"
    assert system.call("strlen", addr) == 12
    with pytest.raises(SymbolError, match="unknown symbol no_such_function"):
        system.call("no_such_function")
    with pytest.raises(MemoryAccessError, match="refused"):
        system.write(system.symbol("vfs_read"), b"\x90")
    with pytest.raises(ModuleLoadError, match="missing.ko"):
        system.insmod("/nonexistent/missing.ko")
    with pytest.raises(TracefsError, match="no such tracefs file") as info:
        system.tracefs.read("set_ftrace_notrace_pid")  # v5.8's, after every variant
    assert info.value.errno == 2
    with pytest.raises(TracefsError, match="no tracer named 'blk'"):
        system.tracefs.write("current_tracer", "blk")


@pytest.mark.parametrize("variant", ["legacy", "seed", "fixed"])
def test_every_variant_traces_a_module_loaded_while_tracing_when_nothing_races(variant):
    s = boot(variant)
    s.tracefs.write("current_tracer", "function")
    mod = s.insmod(guest.module_path("race_mod"), cpu=1)
    for ip in mod.mcount_locs:
        insn = next(md.disasm(s.read(ip, 5), ip))
        assert insn.mnemonic == "call" and int(insn.op_str, 16) == s.symbol("ftrace_caller")
    assert not s.ftrace.ftrace_disabled
    s.tracefs.write("trace", "")
    s.call("race_mod_compute", 1, cpu=1)
    assert [s.env.name_ip(e.ip) for e in s.buffer.entries()] == ["race_mod_compute [race_mod]"]
    assert str(s.kernel.machine.perms_at(mod.area("text").base)) == "r-x"


def test_the_file_lists_match_what_tracefs_serves(system):
    """The static lists hold the newest tree's files (v4.8.17's options/event-fork, which the
    v4.5 trees lack, included)."""
    from ftrace_core.tracefs import READABLE_FILES, WRITABLE_FILES

    newest = boot("v4.8.17")
    assert sorted(WRITABLE_FILES) == newest.tracefs.writable_files
    assert sorted(READABLE_FILES) == newest.tracefs.files
    assert set(READABLE_FILES) - set(system.tracefs.files) == {"options/event-fork"}


@pytest.mark.parametrize("quantum", [1, 2, 3, 4, 5, 7, 11, None])
def test_call_audit_counts_each_entry_once_however_time_is_sliced(system, quantum):
    """The audit sees entries with block hooks, which fire again when a slice stopped on a
    function's first instruction resumes; every slicing must still give one entry a call."""
    from emu.sched import run_to_completion
    from ftrace_core.invariants import CallAudit

    audit = CallAudit(system)
    audit.install()
    system.tracefs.write("current_tracer", "function")
    cpu = system.cpus[0]
    run_to_completion(cpu.call(system.symbol("bench_calls"), 6, quantum=quantum))
    audit.finish()
    traced = [e for e in system.buffer.entries() if system.env.name_ip(e.ip).startswith("bench_")]
    assert len(traced) == 1 + 6 * 3
    assert (audit.missed, audit.extra) == ([], [])
    assert audit.counted == len(traced)


def test_call_audit_sees_a_call_the_tracer_missed(system):
    """The audit is evidence independent of the tracer: a site put back to a nop behind
    ftrace's back (the records still say enabled) shows up as a missed call."""
    from ftrace_core.arch_x86 import NOP5
    from ftrace_core.invariants import CallAudit

    audit = CallAudit(system)
    audit.install()
    system.tracefs.write("current_tracer", "function")
    leaf = system.symbol("bench_leaf")
    system.kernel.set_kernel_text_rw()
    system.kernel.text.write(system.cpus[0], [(leaf, NOP5)])
    system.kernel.set_kernel_text_ro()
    system.call("bench_calls", 2)
    audit.finish()
    assert sorted({ip for _, ip, _ in audit.missed}) == [leaf]
    assert len(audit.missed) == 4


def test_both_recorders_give_the_same_trace():
    """The in-guest recorder (rings in guest memory, drained on read) and the host hook see
    the same calls, parents, CPUs, tasks and timestamps; the idle tasks (pid 0) read as
    <idle>, as the kernel's trace_find_cmdline() prints them."""
    traces = []
    for recorder in ("hook", "guest"):
        s = boot("fixed", recorder=recorder)
        s.cpus[1].set_task(Task("insmod", 2001))
        s.tracefs.write("current_tracer", "function")
        s.call("workload_run", 2, cpu=0)
        s.insmod(str(guest.module_path("race_mod")), cpu=1)
        s.tracefs.write("set_ftrace_filter", "vfs_* race_mod_*")
        s.call("race_mod_work", 3, cpu=1)
        traces.append(s.tracefs.read("trace"))
    assert traces[0] == traces[1]
    lines = [line for line in traces[0].splitlines() if not line.startswith("#")]
    assert any(line.split()[0] == "<idle>-0" and "[000]" in line for line in lines)
    assert any(line.split()[0] == "insmod-2001" and line.endswith(": race_mod_compute <-race_mod_work") for line in lines)


@pytest.mark.parametrize("size_kb,kept", [(None, 45056), ("100", 3200)])
def test_both_recorders_keep_the_same_events_for_a_buffer_size(size_kb, kept):
    """The guest's rings are drained whenever they fill (trace_ring_full), so the host's
    buffer, sized by buffer_size_kb, decides what is kept for both recorders."""
    traces = []
    for recorder in ("hook", "guest"):
        s = boot("fixed", recorder=recorder)
        if size_kb:
            s.tracefs.write("buffer_size_kb", size_kb)
        s.tracefs.write("current_tracer", "function")
        s.call("workload_run", 300)
        traces.append(s.tracefs.read("trace"))
    assert traces[0] == traces[1]
    assert f"# entries-in-buffer/entries-written: {kept}/" in traces[0]

