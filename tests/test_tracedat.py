"""trace.dat files (ftrace_core.ringbuffer.tracedat) read by Debian's real trace-cmd: `trace-cmd
report` of each file must print what `cat trace` printed, line for line, once the known
cosmetic differences below are taken out, and `trace-cmd dump` must read the metadata back.

trace-cmd exits 0 on some bad events, so every check compares output, never only the exit
status.  The cosmetic differences (normalize_report() and normalize_graph()), each a choice of
trace-cmd's printer, not of the data:

- report prints a `cpus=N` line and no `# ...` header;
- report names the event (`function:`, `funcgraph_entry:`, ...) in a padded column and has no
  irqs-off/need-resched/hardirq/preempt column (the `....` of `cat trace`; only `-l` prints
  one, in another layout); the file's common_flags and common_preempt_count are 0, as `....` says;
- report rounds a timestamp to the nearest microsecond where the kernel truncates: `-t`
  prints nanoseconds, which truncated give `cat trace`'s number;
- the function plugin prints `func <-- parent` (with `-O parent=1`; indented by depth unless
  `-O indent=0`) where the kernel prints `func <-parent`;
- a stack trace is `<stack trace >` and `=> func (address)` lines, the kernel's `<stack trace>`
  and ` => func`;
- a print event's ip is 0 in this machine (the host's tracing_mark_write() is no guest
  function), so report prints `0x0: text` where `cat trace` names tracing_mark_write;
- lost events: `CPU:N [K EVENTS DROPPED]`, where trace_pipe prints `CPU:N [LOST K EVENTS]`;
- function_graph: report puts each event's task, CPU and time before the graph columns and pads
  the duration column differently; it prints no `------ => ------` banner when a CPU's task
  changes (verif_pid()).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import guest
from ftrace_core.kernels import VARIANTS
from ftrace_core.record import Call, Session
from ftrace_core.ringbuffer.events import EntryEncoder, ftrace_events
from ftrace_core.ringbuffer.tracedat import collect, kallsyms_text
from ftrace_core.scenario import boot_for, load_scenario, run_scenario
from ftrace_core.system import boot

_NO_TRACE_CMD = None if shutil.which("trace-cmd") else "no trace-cmd (apt-get install trace-cmd)"
if _NO_TRACE_CMD and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI must run the trace.dat tests, but: {_NO_TRACE_CMD}")
pytestmark = pytest.mark.skipif(bool(_NO_TRACE_CMD), reason=_NO_TRACE_CMD or "")

_REPORT = re.compile(r"^(?P<ctx>.*\[\d{3}\])\s+(?P<s>\d+)\.(?P<us>\d{6})\d{3}: (?P<event>\w+):\s+(?P<body>.*)$")
_STACK_LINE = re.compile(r"^=> (?P<func>\S+) \([0-9a-f]+\)$")
_DROPPED = re.compile(r"^CPU:(?P<cpu>\d+) \[(?P<n>\d+) EVENTS DROPPED\]$")
_GRAPH_EVENTS = ("funcgraph_entry", "funcgraph_exit")


def report(path, *args: str) -> list[str]:
    done = subprocess.run(["trace-cmd", "report", "-t", "-O", "parent=1", "-O", "indent=0", *args, str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("cpus="), lines[:3]
    return lines[1:]


def normalize_report(lines: list[str]) -> list[str]:
    """trace-cmd report's lines (function, stack, print events) in `cat trace`'s words."""
    out = []
    for line in lines:
        if m := _DROPPED.match(line):
            out.append(f"CPU:{m['cpu']} [LOST {m['n']} EVENTS]")
            continue
        if m := _STACK_LINE.match(line):
            out.append(f" => {m['func']}")
            continue
        m = _REPORT.match(line)
        assert m, f"not a trace-cmd report line: {line!r}"
        body = m["body"]
        if m["event"] == "function":
            body = body.replace(" <-- ", " <-")
        elif m["event"] == "kernel_stack":
            body = body.replace("<stack trace >", "<stack trace>")
        elif m["event"] == "print":
            body = re.sub(r"^0x0: ", "tracing_mark_write: ", body)
        out.append(f"{m['ctx']} .... {int(m['s']):5d}.{m['us']}: {body}")
    return out


def events_of(trace: str) -> list[str]:
    return [line for line in trace.splitlines() if not line.startswith("#")]


def normalize_graph(lines: list[str], ours: bool) -> list[tuple[int, str, str]]:
    """(CPU, duration, the graph's text) of each function_graph line, from our trace
    (` 0)   0.147 us    |      get_current_pid();`) or trace-cmd's."""
    out = []
    for line in lines:
        if ours:
            if line.startswith(" ---") or not line.strip() or " => " in line:
                continue  # verif_pid()'s banner
            m = re.match(r"^ (\d+)\) (.*)$", line)
            assert m, f"not a graph line: {line!r}"
            cpu, rest = int(m[1]), m[2]
        else:
            m = _REPORT.match(line)
            assert m and m["event"] in _GRAPH_EVENTS, f"not a graph event: {line!r}"
            cpu, rest = int(m["ctx"][-4:-1]), m["body"]
        duration, _, text = rest.partition("|")
        out.append((cpu, " ".join(duration.split()), text))
    return out


def test_report_of_the_kernel_workload_with_the_function_tracer_is_cat_trace(tmp_path):
    system = Session(calls=[Call("workload_run", (2,)), Call("workload_fs_roundtrip", (8,))]).run()
    path = tmp_path / "trace.dat"
    system.write_tracedat(path)
    ours = events_of(system.tracefs.read("trace"))
    assert len(ours) > 500
    assert normalize_report(report(path)) == ours


@pytest.mark.parametrize("variant", ["fixed", "v4.8.17"])
def test_report_of_function_graph_is_cat_trace_on_both_layouts(tmp_path, variant):
    """v4.5's funcgraph_exit is padded to 48 bytes, v4.8.17's packed to 44 with overrun moved:
    trace-cmd reads each file by its own format files."""
    system = Session(variant=variant, tracer="function_graph",
                     calls=[Call("workload_run", (1,)), Call("workload_getpid", ())]).run()
    path = tmp_path / "graph.dat"
    system.write_tracedat(path)
    ours = normalize_graph(events_of(system.tracefs.read("trace")), ours=True)
    assert len(ours) > 200 and any(text.rstrip().endswith("}") for _, _, text in ours)
    assert normalize_graph(report(path), ours=False) == ours


@pytest.mark.parametrize("variant", VARIANTS)
def test_report_of_the_race_is_cat_trace_on_every_variant(tmp_path, variant):
    race = load_scenario("race")
    system = boot_for(race, variant)
    result = run_scenario(race, variant, system=system)
    path = tmp_path / f"race-{variant}.dat"
    system.write_tracedat(path)
    ours = events_of(result.trace)
    assert normalize_report(report(path)) == ours
    if result.ok:  # the kernels without the race trace the module's functions: named from kallsyms
        assert any("race_mod_work <-" in line for line in ours)


def test_stack_traces_and_markers_read_back(tmp_path):
    system = boot()
    fs = system.tracefs
    fs.write("set_ftrace_filter", "get_current_pid")
    fs.write("current_tracer", "function")
    fs.write("trace_options", "func_stack_trace")
    system.call("workload_getpid")
    fs.write("trace_marker", "hello from the marker")
    path = tmp_path / "stack.dat"
    system.write_tracedat(path)
    ours = events_of(fs.read("trace"))
    assert "<stack trace>" in "\n".join(ours) and "hello from the marker" in ours[-1]
    assert normalize_report(report(path)) == ours


def test_lost_events_show_as_trace_cmd_reports_them(tmp_path):
    """Overwritten events set RB_MISSED_EVENTS on the CPU's first page with their count:
    trace-cmd says `[N EVENTS DROPPED]` where trace_pipe says `[LOST N EVENTS]`."""
    system = boot()
    fs = system.tracefs
    fs.write("set_ftrace_filter", "get_current_pid")
    fs.write("current_tracer", "function")
    fs.write("buffer_size_kb", "1")  # 32 entries a CPU
    for _ in range(45):
        system.call("workload_getpid", cpu=1)
    lost = system.buffer.unreported[1]
    assert lost == 45 - 32
    path = tmp_path / "lost.dat"
    system.write_tracedat(path)
    reported = normalize_report(report(path))
    assert reported[0] == f"CPU:1 [LOST {lost} EVENTS]"
    assert reported == fs.read("trace_pipe").splitlines()


def test_dump_reads_the_metadata_back(tmp_path):
    system = Session(calls=[Call("workload_getpid", ())]).run()
    system.insmod(str(guest.module_path("hello")))
    path = tmp_path / "meta.dat"
    system.write_tracedat(path)
    contents = collect(system)

    def dump(*args: str) -> str:
        done = subprocess.run(["trace-cmd", "dump", *args, str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    summary = dump("--summary")
    for want in ("\t\t6\t[Version]\n", "\t\t0\t[Little endian]\n", "\t\t8\t[Bytes in a long]\n",
                 "\t\t4096\t[Page size, bytes]\n", f"[Header page, {len(contents.header_page)} bytes]",
                 f"[Header event, {len(contents.header_event)} bytes]", "[Ftrace format, 13 events]",
                 "[Events format, 0 systems]", f"[Kallsyms, {len(contents.kallsyms)} bytes]",
                 "[Trace printk, 0 bytes]", f"[Saved command lines, {len(contents.cmdlines)} bytes]",
                 "\t2 [CPUs with tracing data]\n", "\t\t[local]\n"):
        assert want in summary, (want, summary)
    kallsyms = dump("--kallsyms")
    assert "hello_answer\t[hello]" in kallsyms_text(system.kernel.kallsyms)
    assert "hello_answer" in kallsyms and "[hello]" in kallsyms
    events = dump("--ftrace-events")
    for event in ftrace_events(EntryEncoder.for_kernel(system.tree).packed):
        assert event.format() in events
    assert "1042 bash" in dump("--cmd-lines")


def test_a_file_whose_layout_lies_does_not_pass(tmp_path):
    """The comparison can fail: v4.8.17's packed events described by v4.5's format files
    make trace-cmd read depth and times from the wrong offsets."""
    system = Session(variant="v4.8.17", tracer="function_graph", calls=[Call("workload_getpid", ())]).run()
    contents = collect(system)
    contents.ftrace_formats = [e.format() for e in ftrace_events(False)]
    path = tmp_path / "lying.dat"
    with open(path, "wb") as out:
        contents.write(out)
    ours = normalize_graph(events_of(system.tracefs.read("trace")), ours=True)
    done = subprocess.run(["trace-cmd", "report", "-t", str(path)], capture_output=True, text=True, timeout=60)
    graph = [line for line in done.stdout.splitlines()[1:] if _REPORT.match(line)]
    assert not graph or normalize_graph(graph, ours=False) != ours


def test_format_dat_needs_an_output_file(capsys):
    from ftrace_core.cli import main

    assert main(["trace", "--format", "dat"]) == 2
    assert "give -o FILE" in capsys.readouterr().err


def test_the_race_with_its_timeline_shows_both_cpus_and_the_kill(tmp_path):
    """race --trace-dat --timeline-events: on a kernel with the race the function tracer dies
    before any site calls it (the trace is empty, as a real kernel's would be), so the run's
    timeline goes in as print events "ftrace-emu: ..." of their CPU and task, in order."""
    import sys

    done = subprocess.run([sys.executable, "-m", "ftrace_core.cli", "race", "--variant", "legacy",
                           "--trace-dat", str(tmp_path), "--timeline-events"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = report(tmp_path / "race-legacy.dat")
    notes = [line for line in lines if "ftrace-emu: " in line]
    assert notes and notes == lines  # the kernel recorded nothing: only the timeline
    bug = next(line for line in notes if "ftrace_bug(): ftrace faulted on writing" in line)
    assert re.match(r" +bash-1042 +\[000\]", bug)
    assert any(re.match(r" +insmod-2001 +\[001\].*module_enable_ro", line) for line in notes)
    fault = next(i for i, line in enumerate(notes) if "FAULTS (-EPERM)" in line)
    assert fault < notes.index(bug)
    stamps = [float(line.split()[2].rstrip(":")) for line in notes]
    assert stamps == sorted(stamps)
    lonely = subprocess.run([sys.executable, "-m", "ftrace_core.cli", "race", "--timeline-events"],
                            capture_output=True, text=True, timeout=120)
    assert lonely.returncode == 2 and "--timeline-events goes with --trace-dat DIR" in lonely.stderr


# trace.dat version 7 (ftrace_core.ringbuffer.tracedat7): the same trace in sections, compressed
# or not.  trace-cmd report of a version 7 file must print exactly what it prints of version 6;
# a compression is checked by trace-cmd where the installed one reads it (`trace-cmd list -c`:
# Debian's 3.1.6 is built with zstd only, so zlib is checked by decompressing the file here).


def _trace_cmd_compressions() -> set[str]:
    done = subprocess.run(["trace-cmd", "list", "-c"], capture_output=True, text=True, timeout=60)
    return {line.strip().split(",")[0] for line in done.stdout.splitlines()[1:] if line.strip()}


def _can_write(compression: str) -> bool:
    from ftrace_core.errors import FtraceError
    from ftrace_core.ringbuffer.tracedat7 import codec

    try:
        codec(compression)
    except FtraceError as exc:
        if os.environ.get("CI") == "true":  # CI installs zstd: the compressed files must be checked
            raise RuntimeError(f"CI must write {compression} trace.dat files, but: {exc}") from None
        return False
    return True


def _v7_sections(data: bytes) -> tuple[str, list[tuple[int, int, bytes]], list[tuple[int, int, int]]]:
    """(compression, [(section id, flags, body)], [(cpu, offset, size)] of the BUFFER option) of
    a version 7 file, read by the format's document, not by the writer's code: the sections
    are walked from the header by their sizes; OPTIONS (never compressed) has BUFFER."""
    import struct

    assert data[:10] == b"\x17\x08\x44tracing" and data[10:12] == b"7\0"
    end = data.index(b"\0", 18)
    name, version_end = data[18:end].decode(), data.index(b"\0", end + 1)
    at = version_end + 1 + 8
    sections, cpus = [], []
    while at < len(data):
        sid, flags, _, size = struct.unpack_from("<HHIQ", data, at)
        sections.append((sid, flags, data[at + 16:at + 16 + size]))
        at += 16 + size
    assert at == len(data)
    options = next(body for sid, _, body in sections if sid == 0)
    while options:
        option, size = struct.unpack_from("<HI", options)
        if option == 3:
            buffer = options[6:6 + size]
            clock_end = buffer.index(b"\0", buffer.index(b"\0", 8) + 1)
            _, count = struct.unpack_from("<II", buffer, clock_end + 1)
            cpus = [struct.unpack_from("<IQQ", buffer, clock_end + 9 + 20 * i) for i in range(count)]
        options = options[6 + size:]
    return name, sections, cpus


def read_v7(path) -> tuple[str, dict[int, bytes], dict[int, bytes]]:
    """(compression, {section id: its body}, {cpu: its data}) of a version 7 file, decompressed
    (none or zlib): each compressed section's sizes and block, each CPU's chunks."""
    import struct
    import zlib

    data = Path(path).read_bytes()
    name, walked, buffer = _v7_sections(data)
    unzip = {"none": lambda b: b, "zlib": zlib.decompress}[name]
    sections, cpus = {}, {}
    for sid, flags, body in walked:
        if flags & 1 and sid != 3:
            zsize, rsize = struct.unpack_from("<II", body)
            body = unzip(body[8:8 + zsize])
            assert len(body) == rsize
        sections[sid] = body
    for cpu, offset, length in buffer:
        raw = data[offset:offset + length]
        if name != "none":
            chunks, pos, out = struct.unpack_from("<I", raw)[0], 4, b""
            for _ in range(chunks):
                zsize, rsize = struct.unpack_from("<II", raw, pos)
                out += unzip(raw[pos + 8:pos + 8 + zsize])
                assert len(out) % 4096 == 0 and rsize % 4096 == 0
                pos += 8 + zsize
            assert pos == length
            raw = out
        cpus[cpu] = raw
    return name, sections, cpus


def _full_report(path) -> tuple[int, str, str]:
    done = subprocess.run(["trace-cmd", "report", "-t", "-O", "parent=1", str(path)], capture_output=True,
                          text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def _v7_case(case: str):
    """(system, timeline) of each trace the version 7 tests write."""
    if case == "graph":
        return Session(tracer="function_graph",
                       calls=[Call("workload_run", (2,)), Call("workload_fs_roundtrip", (2,))]).run(), None
    variant = case.split("-")[1]
    race = load_scenario("race")
    system = boot_for(race, variant)
    result = run_scenario(race, variant, system=system)
    assert result.ok == (variant == "fixed")
    return system, result.timeline if case.endswith("timeline") else None


@pytest.mark.parametrize("case", ["race-fixed", "race-legacy", "race-legacy-timeline", "graph"])
def test_version_7_reports_what_version_6_does(tmp_path, case):
    """race: the clean fixed (CPU 1's module events), the failing legacy (empty, as its kernel's
    trace is; with its timeline, print events on both CPUs); the kernel workload under
    function_graph (17 pages on CPU 0: two compressed chunks)."""
    from ftrace_core.ringbuffer.tracedat7 import CHUNK_PAGES

    system, timeline = _v7_case(case)
    v6 = tmp_path / "v6.dat"
    system.write_tracedat(v6, timeline=timeline)
    code, want, _ = _full_report(v6)
    assert code == 0 and want.startswith("cpus=2\n")
    if case != "race-legacy":
        assert len(want.splitlines()) > 20
    if case == "graph":
        assert len(collect(system).cpu_pages[0]) > CHUNK_PAGES
    readable = _trace_cmd_compressions()
    plain = None
    for compression in ("none", "zlib", "zstd"):
        if not _can_write(compression):
            continue
        path = tmp_path / f"v7-{compression}.dat"
        system.write_tracedat(path, timeline=timeline, version=7, compression=compression)
        if compression != "zstd":  # the file's own contents, decompressed here
            name, sections, cpus = read_v7(path)
            assert name == compression
            if plain is None:
                plain = (sections, cpus)
            else:
                assert {k: v for k, v in sections.items() if k not in (0, 3, 15)} == \
                       {k: v for k, v in plain[0].items() if k not in (0, 3, 15)}
                assert cpus == plain[1]
        if compression == "none" or compression in readable:
            assert _full_report(path) == (0, want, ""), compression
    assert plain is not None
    if timeline is None:  # the kernel's own pages, as trace_pipe_raw gives them
        assert plain[1] == {cpu: b"".join(pages) for cpu, pages in enumerate(collect(system).cpu_pages) if pages}


def _dump(path, *args: str) -> str:
    done = subprocess.run(["trace-cmd", "dump", *args, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_dump_says_version_7_and_the_compression(tmp_path):
    from ftrace_core.ringbuffer.tracedat7 import codec

    system = Session(calls=[Call("workload_getpid", ())]).run()
    contents = collect(system)
    for compression in ["none"] + sorted(c for c in _trace_cmd_compressions() if _can_write(c)):
        path = tmp_path / f"meta-{compression}.dat"
        system.write_tracedat(path, version=7, compression=compression)
        zip_ = codec(compression)
        summary = _dump(path, "--summary")
        for want in ("\t\t7\t[Version]\n", f"\t\t{compression}\t[Compression algorithm]\n",
                     f"\t\t{zip_.version if zip_ else ''}\t[Compression version]\n",
                     '[buffer "", "local" clock, 4096 page size, 1 cpus,',
                     f"[Kallsyms, {len(contents.kallsyms)} bytes]", "[Ftrace format, 13 events]",
                     f"[Saved command lines, {len(contents.cmdlines)} bytes]"):
            assert want in summary, (want, summary)
        assert "is a valid trace-cmd file" in _dump(path, "-v")
        assert "1042 bash" in _dump(path, "--cmd-lines")


def test_a_damaged_compressed_chunk_does_not_pass(tmp_path):
    """A compressed chunk cut short, or with bytes changed, must not give the report of the
    good file: trace-cmd fails or prints something else (compared, never only the exit code)."""
    import struct

    compressions = sorted(c for c in _trace_cmd_compressions() if _can_write(c))
    if not compressions:
        pytest.skip("the installed trace-cmd reads no compression this machine can write")
    system, _ = _v7_case("graph")
    good = tmp_path / "good.dat"
    system.write_tracedat(good, version=7, compression=compressions[0])
    want = _full_report(good)
    assert want[0] == 0 and len(want[1].splitlines()) > 100
    data = good.read_bytes()
    [(_, offset, size)] = _v7_sections(data)[2]  # CPU 0's data: its chunks
    chunks, zsize = struct.unpack_from("<II", data, offset)
    assert chunks == 2 and offset + 12 + zsize < offset + size
    first = offset + 12  # the first chunk's compressed bytes
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[:first + zsize // 2])
    flipped = bytearray(data)
    for i in range(first + zsize // 3, first + zsize // 3 + 16):
        flipped[i] ^= 0xFF
    changed = tmp_path / "changed.dat"
    changed.write_bytes(bytes(flipped))
    for bad in (cut, changed):
        got = _full_report(bad)
        assert got[0] != 0 or got[1] != want[1], bad.name


def test_dat_version_and_compression_are_checked_first(capsys):
    from ftrace_core.cli import main

    for args, error in ((["--format", "dat", "-o", "x.dat", "--dat-version", "9"],
                         "--dat-version 9: expected one of 6, 7"),
                        (["--format", "dat", "-o", "x.dat", "--dat-version", "7", "--compression", "lz4"],
                         "--compression 'lz4': expected one of none, zlib, zstd"),
                        (["--format", "dat", "-o", "x.dat", "--compression", "zlib"],
                         "trace.dat version 6 is never compressed (add --dat-version 7)"),
                        (["--dat-version", "7"], "--dat-version and --compression go with --format dat")):
        assert main(["trace", *args]) == 2
        err = capsys.readouterr().err
        assert error in err and err.count("\n") == 1, err
    assert main(["race", "--compression", "zlib"]) == 2
    assert "go with --trace-dat DIR" in capsys.readouterr().err


def test_race_writes_version_7_files(tmp_path):
    import sys

    done = subprocess.run([sys.executable, "-m", "ftrace_core.cli", "race", "--variant", "fixed", "--trace-dat",
                           str(tmp_path), "--dat-version", "7", "--compression", "zlib"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    name, sections, cpus = read_v7(tmp_path / "race-fixed.dat")
    assert name == "zlib" and list(cpus) == [1] and b"race_mod_work" in sections[19]
