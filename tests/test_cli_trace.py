"""ftrace-emu trace / functions / build-module, the output formats and function_graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import guest
from emu.cpu import Task
from ftrace_core.cli import main
from ftrace_core.output import graph_duration
from ftrace_core.system import boot

GOLDEN = Path(__file__).parent / "golden"


def _run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_trace_text_is_the_kernels_format_and_stable(capsys):
    code, out, err = _run(capsys, "trace", "--filter", "vfs_*", "--filter", "do_sys_open", "--workload", "fs")
    assert code == 0 and err == ""
    assert out == (GOLDEN / "cli_trace_fs.txt").read_text()


def test_the_guest_recorder_prints_the_same_trace(capsys):
    code, out, err = _run(capsys, "trace", "--recorder", "guest", "--filter", "vfs_*", "--filter", "do_sys_open",
                          "--workload", "fs")
    assert code == 0 and err == ""
    assert out == (GOLDEN / "cli_trace_fs.txt").read_text()


def test_trace_json_lines_have_the_documented_fields(capsys):
    code, out, _ = _run(capsys, "trace", "--filter", "get_current_pid", "--run", "workload_getpid", "--format", "json")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 1
    e = events[0]
    assert set(e) >= {"ts", "cpu", "task", "pid", "ip", "symbol", "parent_ip", "parent_symbol", "module"}
    assert (e["symbol"], e["parent_symbol"], e["task"], e["pid"], e["cpu"], e["module"]) == \
        ("get_current_pid", "__x64_sys_getpid", "bash", 1042, 0, None)


def _check_chrome(doc: dict) -> list[dict]:
    events = doc["traceEvents"]
    names = {(e["tid"], e["args"]["name"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {(0, "CPU 0"), (1, "CPU 1")}
    stacks: dict[int, list[str]] = {}
    last: dict[int, float] = {}
    for e in events:
        if e["ph"] == "M":
            continue
        assert {"ph", "ts", "pid", "tid", "name"} <= set(e)
        assert e["ts"] >= last.get(e["tid"], 0)
        last[e["tid"]] = e["ts"]
        if e["ph"] == "B":
            stacks.setdefault(e["tid"], []).append(e["name"])
        elif e["ph"] == "E":
            assert stacks[e["tid"]].pop() == e["name"]
    assert all(not s for s in stacks.values())
    return events


def test_chrome_trace_of_function_graph_nests_per_cpu(capsys):
    code, out, _ = _run(capsys, "trace", "--tracer", "function_graph", "--run", "workload_getpid", "--format", "chrome")
    assert code == 0
    events = _check_chrome(json.loads(out))
    assert sum(1 for e in events if e["ph"] == "B") == sum(1 for e in events if e["ph"] == "E") > 10


def test_function_graph_on_both_cpus_nests_and_durations_match_timestamps():
    s = boot()
    s.cpus[0].set_task(Task("bash", 1042))
    s.cpus[1].set_task(Task("cat", 77))
    s.tracefs.write("current_tracer", "function_graph")
    # interleave the two CPUs slice by slice
    gens = [s.kernel.cpus[0].call(s.symbol("workload_getpid"), quantum=50),
            s.kernel.cpus[1].call(s.symbol("workload_fs_roundtrip"), 8, quantum=50)]
    while gens:
        for g in list(gens):
            try:
                next(g)
            except StopIteration:
                gens.remove(g)
    entries = s.buffer.entries()
    for cpu in (0, 1):
        stack = []
        for e in (e for e in entries if e.cpu == cpu):
            if not e.exit:
                assert e.depth == len(stack)
                stack.append(e)
            else:
                start = stack.pop()
                assert (start.func, start.depth) == (e.func, e.depth)
                assert e.duration == e.ts - start.ts == e.ts - e.calltime > 0
        assert stack == []
    text = s.tracefs.read("trace")
    assert text.startswith("# tracer: function_graph\n#\n# CPU  DURATION                  FUNCTION CALLS\n")
    assert " 0)               |  workload_getpid() {" in text
    assert " 1)               |  workload_fs_roundtrip() {" in text
    assert any(line.startswith(" 0) ") and line.endswith("|        enter_from_user_mode();")
               for line in text.splitlines())


@pytest.mark.parametrize("ns,text", [(100, "  0.100 us    "), (12_345, "+ 12.345 us   "), (150_000, "! 150.000 us  "),
                                     (1_234_567_890, "$ 1234567 us  ")])
def test_graph_duration_columns(ns, text):
    assert graph_duration(ns) == text and len(text) == 14


def test_functions_lists_with_the_kernels_glob_rules(capsys):
    import fnmatch

    everything = boot().tracefs.read("available_filter_functions").splitlines()
    code, out, _ = _run(capsys, "functions", "*schedule*")
    assert code == 0 and out.splitlines() == [f for f in everything if fnmatch.fnmatchcase(f, "*schedule*")]
    assert "schedule" in out.splitlines()
    code, out, _ = _run(capsys, "functions", "race_mod_c*", "--module", str(guest.module_path("race_mod")))
    assert out.splitlines() == ["race_mod_compute [race_mod]", "race_mod_checksum [race_mod]"]
    code, out, _ = _run(capsys, "functions", "--enabled", "vfs_read")
    assert out.startswith("vfs_read (1)")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_build_a_module_from_c_load_call_and_trace_it_in_every_format(tmp_path, capsys):
    src = tmp_path / "mymod.c"
    src.write_text(
        '#include <kernel.h>\n'
        'static const char __modname[] __used __attribute__((section(".modinfo"))) = "name=mymod";\n'
        '__noinline __noclone long my_double(long x) { return 2 * x; }\n'
        'long my_entry(long x) { printk("mymod: %ld\\n", x); return my_double(x) + 1; }\n'
        'int init_module(void) { return 0; }\n')
    ko = tmp_path / "mymod.ko"
    code, out, err = _run(capsys, "build-module", str(src), "-o", str(ko))
    assert code == 0 and out.strip() == f"built {ko}: 3 traceable functions"
    base = ["trace", "--module", str(ko), "--filter", "*:mod:mymod", "--run", "my_entry 20"]
    code, text, _ = _run(capsys, *base)
    lines = [l for l in text.splitlines() if not l.startswith("#")]
    # the function event prints bare names (trace_output.c seq_print_sym_short, v4.4-v4.8)
    assert [l.split(": ", 1)[1] for l in lines] == ["my_entry <-guest_return_trap", "my_double <-my_entry"]
    code, out, _ = _run(capsys, *base, "--format", "json")
    assert [json.loads(l)["module"] for l in out.splitlines()] == ["mymod", "mymod"]
    code, out, _ = _run(capsys, *base, "--format", "chrome", "--tracer", "function_graph")
    names = [e["name"] for e in _check_chrome(json.loads(out)) if e["ph"] == "B"]
    assert names == ["my_entry [mymod]", "my_double [mymod]"]
    out_file = tmp_path / "t.json"
    assert main([*base, "--format", "json", "-o", str(out_file)]) == 0
    assert len(out_file.read_text().splitlines()) == 2


def test_build_module_reports_compile_errors(tmp_path, capsys):
    bad = tmp_path / "bad.c"
    bad.write_text("int init_module(void) { return oops; }\n")
    code, _, err = _run(capsys, "build-module", str(bad), "-o", str(tmp_path / "bad.ko"))
    # gcc's own diagnostics, then the one-line error naming the file
    lines = err.splitlines()
    assert code == 2 and f"{bad}:1:32: error: ‘oops’ undeclared" in err
    assert lines[-1].startswith(f"ftrace-emu: error: gcc failed on {bad}: {bad}:1:32: error:")


def test_build_module_without_gcc_says_so(tmp_path, capsys, monkeypatch):
    src = tmp_path / "x.c"
    src.write_text("int init_module(void) { return 0; }\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = _run(capsys, "build-module", str(src), "-o", str(tmp_path / "x.ko"))
    assert code == 2 and err == "ftrace-emu: error: gcc not found on PATH: install gcc and binutils to build guest code\n"


@pytest.mark.parametrize("args,code,message", [
    (["trace", "--run", "no_such_fn"], 2, "unknown symbol no_such_fn"),
    (["trace", "--filter", "nothing_like_this*"], 2, "'nothing_like_this*' matches no function"),
    (["trace", "--module", "/nonexistent.ko"], 2, "/nonexistent.ko: no such module file"),
    (["trace", "--format", "xml"], 2, "--format 'xml'"),
    (["trace", "--tracer", "blk"], 2, "--tracer 'blk'"),
    (["trace", "--workload", "nope"], 2, "--workload 'nope'"),
    (["trace", "--recorder", "ebpf"], 2, "--recorder 'ebpf'"),
    (["trace", "--run", "workload_getpid x"], 2, "arguments must be integers"),
    (["trace", "--run", "memset 0 0 8"], 1, "BUG: unable to handle kernel NULL pointer dereference at 0000000000000000"),
])
def test_trace_errors_are_one_line_with_the_right_exit_status(capsys, args, code, message):
    got, out, err = _run(capsys, *args)
    assert got == code and message in err
    if code == 2:
        assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_module_is_bad_input(tmp_path, capsys):
    bad = tmp_path / "junk.ko"
    bad.write_bytes(b"\x7fELF" + b"\0" * 60)
    code, _, err = _run(capsys, "trace", "--module", str(bad))
    assert code == 2 and err.startswith(f"ftrace-emu: error: {bad}:")


def test_traceback_flag_shows_the_python_traceback(capsys):
    code, _, err = _run(capsys, "--traceback", "trace", "--run", "no_such_fn")
    assert code == 2 and "Traceback (most recent call last)" in err


def test_an_oops_keeps_the_trace_up_to_it_then_reports_and_exits_1(capsys):
    lkdtm = str(guest.module_path("lkdtm"))
    code, out, err = _run(capsys, "trace", "-m", lkdtm, "--run", "lkdtm_OK 1", "--run", "lkdtm_NULL_DEREF 0",
                          "--run", "lkdtm_OK 2")
    assert code == 1
    events = [l.split(": ", 1)[1] for l in out.splitlines() if not l.startswith("#")]
    assert events[0] == "init_module <-guest_return_trap"  # tracing was on before lkdtm loaded
    calls = [e for e in events if e.endswith("<-guest_return_trap")]
    assert calls == ["init_module <-guest_return_trap", "lkdtm_OK <-guest_return_trap",
                     "lkdtm_NULL_DEREF <-guest_return_trap"]  # not the third call
    assert err.startswith("BUG: unable to handle kernel NULL pointer dereference at 0000000000000000\nIP: [<")


def test_json_lines_record_lost_events(tmp_path, capsys):
    import json

    code, out, _ = _run(capsys, "trace", "--workload", "syscalls", "--format", "json")
    assert code == 0 and not any(json.loads(l).get("type") == "lost" for l in out.splitlines())
    from ftrace_core.record import Call, Session, render

    session = Session(calls=[Call("workload_run", (3,))])
    system = session.run()
    system.buffer.resize(8)  # a small buffer: the oldest events go
    system.call("workload_run", 1)
    lines = [json.loads(l) for l in render(system, "json").splitlines()]
    lost = [l for l in lines if l.get("type") == "lost"]
    assert lost and lost[0]["cpu"] == 0 and lost[0]["events"] == system.buffer.overrun[0] > 0
    assert lines.index(lost[0]) == 0


def test_trace_traces_a_modules_own_init_when_the_filters_allow(capsys):
    hello = str(guest.module_path("hello"))
    code, out, _ = _run(capsys, "trace", "-m", hello, "--run", "hello_answer")
    assert code == 0 and ": init_module <-guest_return_trap" in out
    # a filter on the module needs it loaded first: its init is then not traced
    code, out, _ = _run(capsys, "trace", "-m", hello, "--filter", "*:mod:hello", "--run", "hello_answer")
    assert code == 0 and [l.split(": ", 1)[1] for l in out.splitlines() if not l.startswith("#")] == \
        ["hello_answer <-guest_return_trap"]


def test_functions_takes_a_filter_token_with_a_module(capsys):
    code, out, _ = _run(capsys, "functions", "*:mod:race_mod", "-m", str(guest.module_path("race_mod")))
    assert code == 0 and out.splitlines() and all(l.endswith(" [race_mod]") for l in out.splitlines())
