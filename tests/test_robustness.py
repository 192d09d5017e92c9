"""Bad input, faults, nothing lost: malformed modules, failing and faulting init, guest oopses,
adversarial tracefs writes, bounded buffers."""

from __future__ import annotations

import errno

import random
import re
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guest
from emu.errors import GuestFault, ModuleInitFault, ModuleLoadError
from emu.fuzz import MUTATIONS, mutate
from emu.sched import run_to_completion
from ftrace_core.errors import FtraceError, TracefsError
from ftrace_core.invariants import check
from ftrace_core.scenario import parse_scenario, run_scenario
from ftrace_core.system import boot
from ftrace_core.testing import snapshot, try_load

SHIPPED = ["race_mod", "hello", "joined", "fail_init", "lkdtm"]


@pytest.mark.parametrize("tracing", [False, True])
def test_seeded_fuzz_of_the_module_loader(tracing):
    """Each mutated module loads cleanly or is refused with the loader's own one-line error,
    and leaves modules, memory map, ftrace records, ops and kallsyms as they were."""
    rng = random.Random(20261126 + tracing)
    originals = {n: guest.module_path(n).read_bytes() for n in SHIPPED}
    system = boot("fixed")
    if tracing:
        system.tracefs.write("current_tracer", "function")
    kinds = set()
    for i in range(150):
        src = rng.choice(SHIPPED)
        data, what = mutate(originals[src], rng)
        outcome = try_load(system, data, f"{src}-{i}.ko")  # raises AssertionError on a violation
        kinds.add(outcome.split(":")[0])
    assert "loaded" in kinds and "ModuleLoadError" in kinds
    assert len(MUTATIONS) == 8


def _patch(data: bytes, symbol: str, offset: int, code: bytes) -> bytes:
    """Overwrite a module function's bytes in the file (its .text section at the symbol)."""
    from emu.elf import read_object

    obj = read_object(data, "x.ko")
    sym = next(s for s in obj.symbols if s.name == symbol)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    sec_offset, = struct.unpack_from("<Q", data, shoff + sym.shndx * 64 + 24)
    at = sec_offset + sym.value + offset
    out = bytearray(data)
    out[at:at + len(code)] = code
    return bytes(out)


def test_an_init_that_never_returns_is_stopped_and_unwound():
    system = boot("fixed")
    data = _patch(guest.module_path("hello").read_bytes(), "init_module", 5, b"\xeb\xfe")  # jmp .
    before = snapshot(system)
    with pytest.raises(ModuleInitFault, match=r"hello: init_module oopsed: NMI watchdog: BUG: soft lockup - CPU#1 "
                                              r"did not return within 50000000 instructions"):
        run_to_completion(system.kernel.modules.load_module(system.kernel.cpus[1], data, "hello.ko"))
    assert snapshot(system) == before
    assert "soft lockup" in system.dmesg()


def test_call_sites_that_are_not_calls_to_fentry_are_refused():
    data = _patch(guest.module_path("hello").read_bytes(), "hello_answer", 0, b"\x90" * 5)
    system = boot("fixed")
    outcome = try_load(system, data, "hello.ko")
    # the relocation for the old call's target still lands on bytes 1-4
    assert re.fullmatch(r"ModuleLoadError: hello: __mcount_loc entry 0xffffffffa[0-9a-f]+ is not a call to "
                        r"__fentry__ \(90 [0-9a-f ]+\)", outcome), outcome


def test_a_module_name_with_control_characters_is_refused():
    data = guest.module_path("hello").read_bytes().replace(b"name=hello", b"name=he\nlo")
    assert try_load(boot("fixed"), data, "hello.ko") == (
        "ModuleLoadError: hello.ko: invalid module name 'he\\nlo' (letters, digits, _ and -, under 56 characters)")


@pytest.mark.parametrize("variant", ["legacy", "seed", "fixed"])
@pytest.mark.parametrize("how", ["returns -ENODEV", "oopses"])
def test_failing_init_with_tracing_on_leaves_ftrace_exactly_as_before(variant, how):
    system = boot(variant)
    fs = system.tracefs
    fs.write("current_tracer", "function")
    before = (fs.read("available_filter_functions"), fs.read("enabled_functions"), snapshot(system))
    if how == "returns -ENODEV":
        data, name = guest.module_path("fail_init").read_bytes(), "fail_init.ko"
        error = ModuleLoadError
    else:  # a NULL dereference right after the call site: mov (0x8), %rax
        data = _patch(guest.module_path("hello").read_bytes(), "init_module", 5, bytes.fromhex("488b042508000000"))
        name, error = "hello.ko", ModuleInitFault
    with pytest.raises(error):
        run_to_completion(system.kernel.modules.load_module(system.kernel.cpus[1], data, name))
    assert (fs.read("available_filter_functions"), fs.read("enabled_functions"), snapshot(system)) == before
    invariants, why = check(system, None)
    assert all(invariants[k] for k in ("ftrace_alive", "ref_counts", "call_sites", "text_read_only")), why


@pytest.mark.parametrize("call,first_line", [
    ("lkdtm_NULL_DEREF 8", "BUG: unable to handle kernel NULL pointer dereference at 0000000000000008"),
    ("lkdtm_WRITE_RO 5", "BUG: unable to handle kernel paging request at ffffffffa000"),
    ("lkdtm_UNDEFINED", "invalid opcode: 0000 [#1] SMP"),
    ("lkdtm_EXHAUST_STACK 0", "BUG: stack guard page was hit at ffffc9000001"),
])
def test_guest_faults_in_traced_code_oops_and_the_system_goes_on(call, first_line):
    scn = parse_scenario(
        "task 0 bash 1042\ntask 1 crasher 666\n"
        "cpu 1: insmod lkdtm.ko\n"
        "cpu 0: echo function > current_tracer\n"
        f"cpu 1: call {call}\n"
        "cpu 1: call lkdtm_OK 41\n"
        "cpu 0: call workload_getpid\n"
        "schedule: 1@module_live 0@command#2 1@command#3 0 1\n", "crash.scn")
    r = run_scenario(scn, "fixed")
    crash = next(c for c in r.commands if c.command.startswith(f"call {call.split()[0]}"))
    assert crash.error.startswith(first_line)
    fn = call.split()[0]
    assert re.search(rf"RIP: 0010:\[<ffffffffa[0-9a-f]+>\]  \[<ffffffffa[0-9a-f]+>\] {fn}\+0x\w+/0x\w+ \[lkdtm\]",
                     r.dmesg)
    assert "CPU: 1 PID: 666 Comm: crasher" in r.dmesg
    assert next(c for c in r.commands if c.command == "call lkdtm_OK 41").output == "42"
    assert next(c for c in r.commands if c.command == "call workload_getpid").output == "1042"
    assert f": {fn} <-guest_return_trap" in r.trace  # recorded before the fault, and kept
    assert r.invariants.pop("no_oops") is False  # the oops is reported as one
    assert all(r.invariants.values()), r.violations


def test_stack_overflow_oops_has_a_backtrace_of_return_addresses():
    system = boot("fixed")
    system.insmod(guest.module_path("lkdtm"))
    with pytest.raises(GuestFault) as info:
        system.call("lkdtm_EXHAUST_STACK", 0, cpu=1)
    trace = info.value.report.split("Call Trace:\n", 1)[1].split("\nCode: ", 1)[0].splitlines()
    assert len(trace) >= 20 and all(re.fullmatch(r" \[<ffffffffa[0-9a-f]+>\] lkdtm_EXHAUST_STACK\+0x\w+/0x\w+ \[lkdtm\]",
                                                 line) for line in trace)
    assert system.call("lkdtm_OK", 1, cpu=1) == 2  # the CPU's stack is usable again


# -- tracefs under adversarial writes -------------------------------------------------------------

FILES = ["set_ftrace_filter", "set_ftrace_notrace", "current_tracer", "tracing_on", "trace", "buffer_size_kb"]
tokens = st.one_of(
    st.sampled_from(["vfs_*", "*schedule*", "!vfs_read", "do_sys_open", "sch?dule", "*:mod:race_mod",
                     "race_mod_*:mod:race_mod", "*:mod:!race_mod", "!*:mod:", "foo:bar", "::", "!", "*", "**",
                     "[a-z]*", "function", "function_graph", "nop", "0", "1", "64", "-1", "", "*lock*"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FILES), st.lists(tokens, max_size=3), st.booleans()), max_size=8))
def test_random_tracefs_writes_keep_hashes_and_records_consistent(writes):
    system = boot("fixed")
    system.insmod(guest.module_path("race_mod"))
    for file, words, append in writes:
        try:
            system.tracefs.write(file, " ".join(words), append)
        except TracefsError as exc:
            assert exc.errno in (22, 13, 19) and "\n" not in str(exc)  # EINVAL, EACCES, ENODEV
        invariants, why = check(system, None)
        assert invariants["ref_counts"] and invariants["call_sites"] and invariants["text_read_only"], why
        assert not system.ftrace.ftrace_disabled
    system.call("race_mod_work", 2)  # and tracing still works on whatever was left


# -- bounded buffers ---------------------------------------------------------------------------------

def test_overflow_drops_the_oldest_events_and_says_so():
    system = boot("fixed")
    fs = system.tracefs
    fs.write("buffer_size_kb", "1")  # 32 entries per CPU
    assert fs.read("buffer_size_kb") == "1\n"
    fs.write("current_tracer", "function")
    for _ in range(5):
        system.call("workload_run", 1)
    assert len(system.buffer.cpus[0]) == 32
    written = system.buffer.written[0]
    text = fs.read("trace")
    assert f"# entries-in-buffer/entries-written: 32/{written}   #P:2" in text
    assert "LOST" not in text  # the non-consuming `trace` says it in its header only
    pipe = fs.read("trace_pipe")
    assert pipe.startswith(f"CPU:0 [LOST {written - 32} EVENTS]\n") and pipe.count("\n") == 33
    assert fs.read("trace_pipe") == ""


@pytest.mark.parametrize("value,err", [("0", errno.EINVAL), ("-4", errno.EINVAL), ("lots", errno.EINVAL),
                                       ("99999999", errno.ENOMEM), ("", errno.EINVAL), ("1 2", errno.EINVAL),
                                       ("99999999999999999999999", errno.ERANGE)])
def test_buffer_size_kb_rejects_nonsense(value, err):
    """tracing_entries_write(): kstrtoul_from_user() (-EINVAL, -ERANGE), "must have at least
    1 entry" (-EINVAL), and a size the machine will not allocate (-ENOMEM)."""
    system = boot("fixed")
    with pytest.raises(TracefsError, match="buffer_size_kb: ") as info:
        system.tracefs.write("buffer_size_kb", value)
    assert info.value.errno == err and system.tracefs.read("buffer_size_kb") == "1408\n"


def test_errors_are_the_projects_own_types():
    assert issubclass(TracefsError, FtraceError) and issubclass(ModuleInitFault, ModuleLoadError)


@pytest.mark.parametrize("call,message", [
    ("workload_run 1 2 3 4 5 6 7", "7 arguments given, the x86-64 calling convention passes at most 6"),
    ("workload_run 99999999999999999999999", "argument 99999999999999999999999 does not fit in a 64-bit register"),
    ("workload_run -9223372036854775809", "does not fit in a 64-bit register"),
    ("log_dropped", "log_dropped is not a function"),
    # the prototypes come from the guest's debug information (emu.dwarf)
    ("workload_run", "workload_run: workload_run(iterations) takes 1 argument, 0 given"),
    ("workload_getpid 5", "workload_getpid: workload_getpid() takes 0 arguments, 1 given"),
    ("memset 1 2", "memset: memset(dst, c, n) takes 3 arguments, 2 given"),
    ("printk", "printk: printk(fmt, ...) takes at least 1 argument, 0 given"),
])
def test_calls_that_cannot_be_made_are_refused_before_running(call, message, capsys):
    from ftrace_core.cli import main

    assert main(["trace", "--run", call]) == 2
    assert message in capsys.readouterr().err


def test_a_module_prototype_is_checked_too():
    from emu.errors import BadCall

    system = boot("fixed")
    system.insmod(guest.module_path("race_mod"))
    with pytest.raises(BadCall, match=r"race_mod_compute\(x\) takes 1 argument, 0 given"):
        system.call("race_mod_compute")
    assert system.call("printk", system.symbol("linux_banner")) > 0  # variadic: more is fine


def test_missing_arguments_are_zero_not_leftovers(tmp_path):
    """Without debug information (a module built by others, stripped) a call's prototype is
    unknown: the arguments not given are zero, never what the registers held."""
    import shutil
    import subprocess

    stripped = tmp_path / "race_mod.ko"
    shutil.copy(guest.module_path("race_mod"), stripped)
    subprocess.run(["objcopy", "--strip-debug", str(stripped)], check=True)
    system = boot("fixed")
    system.call("memset", system.symbol("log_dropped"), 0x41, 8)  # leaves rsi/rdx non-zero
    assert system.call("strlen", system.symbol("__log_buf")) > 0
    # race_mod_compute(x) with no argument computes from x = 0, every time
    system.insmod(str(stripped))
    assert system.kernel.prototype(system.symbol("race_mod_compute")) is None
    assert system.call("race_mod_compute") == system.call("race_mod_compute", 0)


def test_a_call_that_never_returns_is_a_soft_lockup(tmp_path, capsys):
    """A direct call has the instruction budget of a module's init (emu.kernel.CALL_BUDGET)."""
    from emu.kernel import CALL_BUDGET
    from emu.modules import INIT_BUDGET
    from ftrace_core.cli import main

    assert CALL_BUDGET == INIT_BUDGET
    src = tmp_path / "spin.c"
    src.write_text("#include <kernel.h>\nlong forever(long x) { volatile long i = 0; while (x) i++; return i; }\n"
                   "int init_module(void) { return 0; }\n")
    ko = tmp_path / "spin.ko"
    assert main(["build-module", str(src), "-o", str(ko)]) == 0
    capsys.readouterr()
    assert main(["trace", "-m", str(ko), "--run", "forever 1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"NMI watchdog: BUG: soft lockup - CPU#0 did not return within {CALL_BUDGET} instructions!")


def test_a_scenario_file_that_is_not_utf8_is_refused_with_its_line(tmp_path, capsys):
    from ftrace_core.cli import main

    bad = tmp_path / "bad.scn"
    bad.write_bytes(b"cpu 0: cat trace\ncpu 0: echo \xff > trace\n")
    assert main(["run", str(bad)]) == 2
    assert f"{bad}:2: not UTF-8 text (byte 0xff)" in capsys.readouterr().err
