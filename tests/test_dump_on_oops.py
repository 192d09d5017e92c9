"""ftrace_dump_on_oops: kernel/trace/trace.c trace_die_handler() -> ftrace_dump() on DIE_OOPS,
which x86's __die() raises right after its "Oops:" line (arch/x86/kernel/dumpstack.c), the
kernel.ftrace_dump_on_oops sysctl (kernel/sysctl.c: 0644, proc_dointvec) and the
`ftrace_dump_on_oops[=orig_cpu]` boot option (set_ftrace_dump_on_oops()); the same code in
v4.5.0 and v4.8.17."""

from __future__ import annotations

import dataclasses
import errno

import guest
import pytest

from emu.errors import GuestFault
from ftrace_core.cli import main
from ftrace_core.scenario import load_scenario, parse_scenario, run_scenario
from ftrace_core.sysctl import SysctlError
from ftrace_core.system import boot

NAME = "kernel.ftrace_dump_on_oops"
LKDTM = str(guest.module_path("lkdtm"))


def _system(cmdline: str | None = None):
    s = boot("fixed", cmdline=cmdline)
    s.insmod(LKDTM)
    s.tracefs.write("set_ftrace_filter", "lkdtm_*")
    s.tracefs.write("current_tracer", "function")
    s.call("lkdtm_OK", 1, cpu=0)
    s.call("lkdtm_OK", 2, cpu=1)
    return s


def _oops(s, cpu: int = 1) -> list[str]:
    with pytest.raises(GuestFault) as err:
        s.call("lkdtm_NULL_DEREF", 8, cpu=cpu)
    return err.value.report.splitlines()


def _events(s) -> list[str]:
    return [line for line in s.tracefs.read("trace").splitlines() if not line.startswith("#")]


def test_the_sysctl_stores_any_int():
    """kernel/sysctl.c: ftrace_dump_on_oops, 0644, proc_dointvec (no handler of its own)."""
    s = boot("fixed")
    assert s.sysctl(NAME) == "0\n" and s.sysctls.entry(NAME).mode == 0o644
    s.set_sysctl(NAME, 7)
    assert s.sysctl(NAME) == "7\n"
    with pytest.raises(SysctlError) as err:
        s.set_sysctl(NAME, "one")
    assert err.value.errno == errno.EINVAL and s.sysctl(NAME) == "7\n"


def test_an_oops_dumps_every_cpu_after_the_oops_line_and_stops_tracing():
    """__die(): the "Oops: ... [#1] SMP" line, then notify_die(DIE_OOPS) ->
    trace_die_handler() -> ftrace_dump(DUMP_ALL): tracing_off(), "Dumping ftrace buffer:",
    each event consumed and printed between dashed lines, then print_modules()."""
    s = _system()
    s.set_sysctl(NAME, 1)
    report = _oops(s)
    at = report.index("Dumping ftrace buffer:")
    assert report[at - 1] == "Oops: 0000 [#1] SMP"
    end = report.index("---------------------------------", at + 2)
    assert report[at + 1] == "---------------------------------" and report[end + 1].startswith("Modules linked in:")
    dumped = report[at + 2:end]
    # oldest first by each event's stamp (each CPU's clock counts its own instructions)
    assert sorted(line.split(":")[-1].split()[0] for line in dumped) == ["lkdtm_NULL_DEREF", "lkdtm_OK", "lkdtm_OK"]
    assert {line.split()[1][0] for line in dumped} == {"0", "1"}  # both CPUs' buffers
    assert s.tracefs.read("tracing_on") == "0\n"  # tracing_off()
    assert _events(s) == []  # trace_consume()


def test_orig_cpu_dumps_the_oopsing_cpu_only():
    """`ftrace_dump_on_oops=orig_cpu` is DUMP_ORIG: iter.cpu_file = raw_smp_processor_id()."""
    s = _system("ftrace_dump_on_oops=orig_cpu")
    report = _oops(s, cpu=1)
    at = report.index("Dumping ftrace buffer:")
    dumped = report[at + 2:report.index("---------------------------------", at + 2)]
    assert [line.split()[1][0] for line in dumped] == ["1", "1"]
    assert [e.split()[-2] for e in _events(s)] == ["lkdtm_OK"]  # CPU 0's event stays


def test_unset_no_dump_and_the_trace_is_kept():
    s = _system()
    report = _oops(s)
    assert "Dumping ftrace buffer:" not in report
    assert len(_events(s)) == 3 and s.tracefs.read("tracing_on") == "1\n"


def test_a_value_that_is_no_mode_dumps_every_cpu_after_saying_so():
    """ftrace_dump(): default case, "Bad dumping mode, switching to all CPUs dump"."""
    s = _system()
    s.set_sysctl(NAME, 7)
    report = _oops(s)
    at = report.index("Bad dumping mode, switching to all CPUs dump")
    assert report[at - 1].startswith("Oops:") and report[at + 1] == "Dumping ftrace buffer:"


def test_an_empty_buffer_says_so():
    s = boot("fixed", cmdline="ftrace_dump_on_oops")
    s.insmod(LKDTM)
    report = _oops(s)
    assert report[report.index("Dumping ftrace buffer:") + 1] == "   (ftrace buffer empty)"


def test_a_bug_in_ftrace_dumps_too():
    """BUG() is die("invalid opcode") -> __die() -> notify_die(DIE_OOPS)."""
    s = _system("ftrace_dump_on_oops")
    with pytest.raises(GuestFault) as err:
        s.env.bug("arch/x86/kernel/ftrace.c:0", "RIP: ftrace_replace_code")
    report = err.value.report.splitlines()
    assert report[report.index("Dumping ftrace buffer:") - 1] == "invalid opcode: 0000 [#1] SMP"


def test_a_fixed_up_text_write_fault_is_no_oops():
    """The race's faulting text write is probe_kernel_write() failing (the exception table
    fixes it up, ftrace_bug() reports it): no die, no dump."""
    race = dataclasses.replace(load_scenario("race"), cmdline="ftrace_dump_on_oops")
    r = run_scenario(race, "seed")
    assert r.ftrace_disabled and "Dumping ftrace buffer" not in r.dmesg


def test_a_scenario_oops_puts_the_dump_in_dmesg():
    scn = parse_scenario("""
cmdline: ftrace_dump_on_oops
cpu 0: echo 'lkdtm_*' > set_ftrace_filter
cpu 0: echo function > current_tracer
cpu 1: call lkdtm_OK 3
cpu 1: call lkdtm_NULL_DEREF 8
schedule: 0 1
""", "oops.scn")
    system = boot("fixed", cmdline="ftrace_dump_on_oops")
    system.insmod(LKDTM)
    r = run_scenario(scn, "fixed", system=system)
    log = [line.split("] ", 1)[-1] for line in r.dmesg.splitlines()]
    at = log.index("Dumping ftrace buffer:")
    assert log[at - 1] == "Oops: 0000 [#1] SMP"
    assert "lkdtm_OK <-guest_return_trap" in log[at + 2] and "lkdtm_NULL_DEREF" in log[at + 3]


def test_trace_command_prints_the_dump_in_the_oops(capsys):
    assert main(["trace", "-m", LKDTM, "--cmdline", "ftrace_dump_on_oops", "--filter", "lkdtm_*",
                 "--run", "lkdtm_OK 1", "--run", "lkdtm_NULL_DEREF 8"]) == 1
    captured = capsys.readouterr()
    assert "Oops: 0000 [#1] SMP\nDumping ftrace buffer:\n---------------------------------\n" in captured.err
    assert ": lkdtm_OK" not in captured.out  # the dump consumed the buffer
