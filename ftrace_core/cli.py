"""The `ftrace-emu` command line: each command parses, calls one library function, renders.

Errors are mapped to one-line messages and exit codes in one place (`main`): 2 for bad input,
1 when the emulated system failed; `--traceback` shows the Python traceback as well.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

import guest
from emu import errors as emu_errors
from emu.schedule import ScheduleError
from emu.kernel import CALL_BUDGET
from ftrace_core.errors import FtraceDead, FtraceError
from ftrace_core.system import boot as boot_system
from ftrace_core.flags import FTRACE_FL_ENABLED
from ftrace_core.kernels import VARIANTS

app = typer.Typer(
    help="An emulator-backed live function tracer: Linux's ftrace patching real gcc-built x86-64 code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"traceback": False}
VARIANT_HELP = ("Kernel variant, each a real kernel tree: " + ", ".join(VARIANTS)
                + " (ftrace-emu variants lists them).")
#: --cmdline, shared by every command that boots a system.
CmdlineOpt = Annotated[Optional[str], typer.Option(
    "--cmdline", metavar="TEXT",
    help="Kernel command line to boot with (default: console=ttyS0); its tracing options apply at boot as "
         "the kernel applies them: ftrace=TRACER, ftrace_filter=, ftrace_notrace=, ftrace_graph_filter=, "
         "ftrace_graph_notrace= (comma-separated globs), ftrace_dump_on_oops[=orig_cpu], trace_options=, "
         "trace_clock=, trace_buf_size=.")]
#: trace.dat's version and compression, shared by trace --format dat and race --trace-dat.
DatVersionOpt = Annotated[int, typer.Option(
    "--dat-version", help="trace.dat version: 6 (default) or 7 (sections, compressible; trace-cmd 3.x reads it).")]
CompressionOpt = Annotated[Optional[str], typer.Option(
    "--compression", help="With --dat-version 7: none, zlib or zstd (zstd needs a zstd module or program; "
                          "`trace-cmd list -c` names what the installed trace-cmd reads).")]

# Errors caused by what the user gave us (exit 2) versus the system failing (exit 1).
_BAD_INPUT = (emu_errors.BadCall, emu_errors.ElfError, emu_errors.ModuleLoadError, emu_errors.SymbolError, emu_errors.ToolchainError,
              FileNotFoundError, FtraceError, ScheduleError)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"ftrace-emu {version('ftrace-emu')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    traceback: bool = typer.Option(False, "--traceback",
                                   help="Show the Python traceback on errors (before or after the command)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _state["traceback"] = traceback


@app.command()
def boot(
    image: Optional[Path] = typer.Option(None, "--image", help="Kernel image to boot (default: the shipped one)."),
    variant: str = typer.Option("fixed", "--variant", "-v", help=VARIANT_HELP),
    cmdline: CmdlineOpt = None,
) -> None:
    """Boot the kernel image: dmesg (the banner names the variant's tree), the memory map with
    protections, ftrace's call sites.

    Example: ftrace-emu boot --variant seed --cmdline 'ftrace=function ftrace_filter=vfs_*'
    """
    system = boot_system(_variants(variant)[0], image or guest.VMLINUX, cmdline=cmdline)
    kernel = system.kernel
    console = Console(highlight=False, soft_wrap=True)
    console.print(kernel.dmesg(), end="", markup=False)
    table = Table(title="memory map", show_edge=False)
    for col in ("start", "end", "prot", "mapping"):
        table.add_column(col)
    for entry in kernel.memory_map():
        table.add_row(f"{entry.start:016x}", f"{entry.end:016x}", str(entry.perms), entry.name)
    console.print(table)
    enabled = sum(1 for rec in system.ftrace.records if rec.flags & FTRACE_FL_ENABLED)
    console.print(f"ftrace: {len(system.ftrace.records)} call sites, "
                  + (f"{enabled} enabled (current_tracer: {system.tracefs.read('current_tracer').strip()})"
                     if enabled else "all nops"), markup=False)


@app.command()
def variants(
    as_json: bool = typer.Option(False, "--json", help="One JSON object: the variants in history's order."),
) -> None:
    """The kernels ftrace-emu models: each variant's tree, commit and subject, and what it
    changed from the one before, with the kernel file and function each change lives in.

    Example: ftrace-emu variants
    """
    from .kernels import KERNELS

    if as_json:
        print(json.dumps([{"variant": t.name, "commit": t.commit, "subject": t.subject, "release": t.release,
                           "uname": t.uname, "summary": t.summary,
                           "changes": [{"commit": c.commit, "file": c.file, "function": c.function,
                                        "change": c.summary} for c in t.changes]}
                          for t in KERNELS.values()], indent=2))
        return
    for tree in KERNELS.values():
        print(f"{tree.name}: {tree.commit} {tree.subject}")
        print(f"  first released in {tree.release}; boots as {tree.uname}")
        print(f"  {tree.summary}")
        for change in tree.changes:
            print(f"  - {change.file} {change.function}() [{change.commit}]: {change.summary}")
        print()


@app.command()
def history(
    max_preemptions: Optional[int] = typer.Option(None, "--max-preemptions", "-k",
                                                  help="Preemption bound (default: none, every schedule)."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Processes: variants explored in parallel."),
    as_json: bool = typer.Option(False, "--json", help="One object: a verdict per bug."),
) -> None:
    """Every bug of this history on every variant: explore each bug's scenario over every
    schedule, replay each failing schedule on the other variants, and check the verdicts
    against the trees (a variant fails iff it has the change that brought the bug and not
    the one that fixed it).  Exits 1 if any verdict disagrees.

    Example: ftrace-emu history --jobs 2
    """
    from .explore.history import explore_history

    if jobs < 1:
        raise FtraceError(f"--jobs must be at least 1, got {jobs}")
    if max_preemptions is not None and max_preemptions < 0:
        raise FtraceError(f"--max-preemptions must be 0 or more, got {max_preemptions}")
    verdicts = explore_history(max_preemptions, jobs)
    disagree = {v.bug.name: v.disagreements() for v in verdicts}
    if as_json:
        print(json.dumps({"bugs": [v.to_json() for v in verdicts]}, indent=2))
    else:
        out = Console(highlight=False, soft_wrap=True)
        table = Table(title="failing schedules / schedules explored"
                      + (f" (within {max_preemptions} preemptions)" if max_preemptions is not None else ""))
        table.add_column("bug")
        for v in VARIANTS:
            table.add_column(v)
        table.add_column("fixed in")
        for verdict in verdicts:
            cells = [f"{len(verdict.failing(v))} / {r.schedules}" for v, r in verdict.reports.items()]
            table.add_row(verdict.bug.name, *cells, verdict.bug.fixing_tree().name)
        out.print(table)
        for verdict in verdicts:
            for v in verdict.reports:
                if verdict.others(v):
                    out.print(f"{verdict.bug.name}: {v} also failed in {len(verdict.others(v))} schedules "
                              f"with another bug of its tree", markup=False)
        for verdict in verdicts:
            for line in disagree[verdict.bug.name] or ["agrees with the trees"]:
                out.print(f"{verdict.bug.name}: {line}", markup=False)
    if any(disagree.values()):
        raise typer.Exit(1)


@app.command()
def trace(
    module: list[Path] = typer.Option([], "--module", "-m", help="Load this module first (repeatable)."),
    filter_: list[str] = typer.Option([], "--filter", "-f", help="set_ftrace_filter glob (repeatable; !glob, "
                                                                 "func:mod:name)."),
    notrace: list[str] = typer.Option([], "--notrace", "-n", help="set_ftrace_notrace glob (repeatable)."),
    tracer: str = typer.Option("function", "--tracer", help="function or function_graph."),
    run_: list[str] = typer.Option([], "--run", "-r", help="Call 'SYMBOL ARGS...' in the guest (repeatable)."),
    workload: Optional[str] = typer.Option(None, "--workload", "-w",
                                           help="A named workload: syscalls (default), getpid, fs."),
    cpu: int = typer.Option(0, "--cpu", help="The CPU the calls run on."),
    variant: str = typer.Option("fixed", "--variant", "-v", help=VARIANT_HELP),
    fmt: str = typer.Option("text", "--format", help="text (the kernel's trace), json (JSON Lines: one object an event, "
                                                     "after one a CPU that lost events), "
                                                     "chrome (trace-event JSON for Perfetto / chrome://tracing), "
                                                     "dat (trace.dat for trace-cmd report and KernelShark; needs -o)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the trace here, not to stdout."),
    recorder: str = typer.Option("hook", "--recorder", help="hook (a host hook on each traced call) or guest "
                                                            "(per-CPU rings in guest memory, the kernel's way: "
                                                            "~50x faster, for long runs)."),
    budget: int = typer.Option(CALL_BUDGET, "--budget", help="Instructions a call may run before it is reported as "
                                                             "a soft lockup (0: no limit)."),
    cmdline: CmdlineOpt = None,
    dat_version: DatVersionOpt = 6,
    compression: CompressionOpt = None,
) -> None:
    """Boot, load modules, set filters, trace guest calls, and print the trace.

    Example: ftrace-emu trace --filter 'vfs_*' --filter do_sys_open --workload fs
    """
    from .record import FORMATS, WORKLOADS, Call, Session, call_progress, render

    if fmt not in FORMATS:
        raise FtraceError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "dat" and output is None:
        raise FtraceError("--format dat writes a binary trace.dat: give -o FILE")
    _dat_format(dat_version, compression, None if fmt == "dat" else "--format dat")
    if run_ and workload:
        raise FtraceError("give --run or --workload, not both")
    if not 0 <= cpu < 2:
        raise FtraceError(f"--cpu {cpu}: this machine has CPUs 0-1")
    if workload is not None and workload not in WORKLOADS:
        raise FtraceError(f"--workload {workload!r}: expected one of {', '.join(WORKLOADS)}")
    if budget < 0:
        raise FtraceError(f"--budget {budget}: expected a number of instructions, or 0 for no limit")
    _check_files(module)
    calls = [Call.parse(text) for text in run_] or [Call(*WORKLOADS[workload or "syscalls"])]
    session = Session(variant=_variants(variant)[0], modules=[str(p) for p in module], filters=filter_,
                      notrace=notrace, tracer=tracer, calls=calls, cpu=cpu, recorder=recorder,
                      budget=budget or None, progress=call_progress(), cmdline=cmdline)
    system = session.run()
    if fmt == "dat":
        size = system.write_tracedat(output, version=dat_version, compression=compression)
        how = f"{dat_version}, {compression}" if compression not in (None, "none") else f"{dat_version}"
        print(f"wrote {output} ({size} bytes, trace.dat version {how}: trace-cmd report {output})", file=sys.stderr)
        if session.fault is not None:
            raise session.fault
        return
    text = render(system, fmt)
    if output is not None:
        output.write_text(text)
        print(f"wrote {output} ({text.count(chr(10))} lines)", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if session.fault is not None:
        raise session.fault  # the oops after the trace, exit 1


@app.command()
def functions(
    glob: Optional[str] = typer.Argument(None, help="Only functions this filter token selects, as set_ftrace_filter "
                                                    "would ('vfs_*', '*:mod:race_mod', '!*lock*')."),
    enabled: bool = typer.Option(False, "--enabled", help="enabled_functions after turning the function tracer on."),
    module: list[Path] = typer.Option([], "--module", "-m", help="Load this module first (repeatable)."),
    cmdline: CmdlineOpt = None,
) -> None:
    """List the traceable functions (available_filter_functions), or the enabled ones.

    Example: ftrace-emu functions 'race_mod_*' --module guest/modules/race_mod.ko
    """
    from .tracefs.regex import selected_by

    _check_files(module)
    system = boot_system("fixed", cmdline=cmdline)
    for path in module:
        system.insmod(str(path))
    if enabled:
        system.tracefs.write("current_tracer", "function")
    lines = system.tracefs.read("enabled_functions" if enabled else "available_filter_functions").splitlines()
    if glob is not None:
        # The token selects what it would add to an empty set_ftrace_filter ('!' inverts).
        negate = glob.startswith("!")
        chosen = selected_by(system, glob.removeprefix("!"))
        if chosen is None:
            raise FtraceError(f"no function matches {glob!r}")
        names = {system.env.name_ip(ip) for ip in chosen}
        lines = [l for l in lines if (l.split(" (")[0] in names) != negate]
        if not lines:
            raise FtraceError(f"no function matches {glob!r}")
    for line in lines:
        print(line)


@app.command()
def disasm(
    symbol: str = typer.Argument(..., help="A kernel or module function."),
    module: list[Path] = typer.Option([], "--module", "-m", help="Load this module first (repeatable)."),
    tracer: str = typer.Option("nop", "--tracer", help="Switch to this tracer first, to see the patched site."),
    cmdline: CmdlineOpt = None,
) -> None:
    """Disassemble a function as it is in emulated memory, with its call site's state and calls.

    Example: ftrace-emu disasm vfs_read --tracer function
    """
    from .disasm import disassemble

    _check_files(module)
    system = boot_system("fixed", cmdline=cmdline)
    for path in module:
        system.insmod(str(path))
    system.tracefs.write("current_tracer", tracer)
    print(disassemble(system, symbol))


@app.command()
def shell(
    module: list[Path] = typer.Option([], "--module", "-m", help="Load this module first (repeatable)."),
    variant: str = typer.Option("fixed", "--variant", "-v", help=VARIANT_HELP),
    cmdline: CmdlineOpt = None,
) -> None:
    """An interactive tracefs prompt, with history; reads commands from stdin when piped.

    Commands: echo ... > FILE, echo ... >> FILE, cat FILE, ls, insmod, rmmod, call SYMBOL ARGS,
    dmesg, cpu N, help, exit.

    Example: printf 'echo function > current_tracer\ncall workload_getpid\ncat trace\n' | ftrace-emu shell
    """
    from .shell import Shell

    _check_files(module)
    system = boot_system(_variants(variant)[0], cmdline=cmdline)
    for path in module:
        system.insmod(str(path))
    Shell(system).run()


@app.command("build-module")
def build_module(
    sources: list[Path] = typer.Argument(..., help="C files; several are joined with ld -r."),
    output: Path = typer.Option(..., "-o", "--output", help="The .ko file to write."),
) -> None:
    """Build a loadable module from C with the guest kernel's flags (-pg -mfentry -mrecord-mcount ...).

    Example: ftrace-emu build-module mymod.c -o mymod.ko && ftrace-emu trace -m mymod.ko --run 'my_fn 3'
    """
    from emu.elf import read_object
    from emu.toolchain import build_module as build

    from emu.errors import ToolchainError

    try:
        path = build(sources, output, warn=lambda text: print(text, end="", file=sys.stderr))
    except ToolchainError as exc:
        print(getattr(exc, "diagnostics", ""), end="", file=sys.stderr)  # gcc's own lines first
        raise
    obj = read_object(path.read_bytes(), str(path))
    sites = sum(s.size // 8 for s in obj.sections if s.name == "__mcount_loc")
    print(f"built {path}: {sites} traceable functions")




def _render_run(console: Console, result, timeline: bool) -> None:
    bad = [name for name, ok in result.invariants.items() if not ok]
    console.print(f"[bold]{result.variant}[/bold]: schedule {result.schedule}")
    for segment in result.unfollowed:
        console.print(f"  schedule NOT followed: {segment}", markup=False)
    if timeline:
        console.print(result.timeline.render(), markup=False, end="")
    for cmd in result.commands:
        line = f"  CPU {cmd.cpu}: $ {cmd.command}"
        if cmd.error:
            line += f"  -> {cmd.error}"
        elif cmd.output and "\n" not in cmd.output.strip():
            line += f"  -> {cmd.output.strip()}"
        console.print(line, markup=False)
        if cmd.output and "\n" in cmd.output.strip():
            console.print(cmd.output, markup=False, end="")
    if result.ftrace_disabled:
        console.print(f"  ftrace: [red]DISABLED[/red] by {result.killed_by or 'ftrace_kill()'}:")
        for line in (result.bug or "").splitlines():
            console.print(f"    {line}", markup=False)
    else:
        console.print("  ftrace: alive")
    traced = ", ".join(result.traced_module_functions) or "(none)"
    console.print(f"  module functions traced: {traced}", markup=False)
    marks = "  ".join(f"{n} {'ok' if ok else 'FAIL'}" for n, ok in result.invariants.items())
    console.print(f"  invariants: {marks}", markup=False)
    for name in bad:
        for why in result.violations.get(name, [])[:3]:
            console.print(f"    {name}: {why}", markup=False)


NAIVE_HELP = "Rewrite live call sites byte by byte instead of with breakpoints (shows why x86 uses them)."


def _run_variants(scenario_name: str, variants: list[str], schedule: Optional[str], quantum: Optional[int],
                  timeline: bool, as_json: bool, naive: bool = False, cmdline: Optional[str] = None,
                  trace_dat: Optional[Path] = None, timeline_events: bool = False, dat_version: int = 6,
                  compression: Optional[str] = None) -> list:
    from .scenario import boot_for, load_scenario, run_scenario

    if quantum is not None and quantum < 1:
        raise FtraceError(f"--quantum must be at least 1, got {quantum}")
    scenario = _with_cmdline(load_scenario(scenario_name), cmdline)
    patching = "naive" if naive else "breakpoints"
    if trace_dat is not None and trace_dat.exists() and not trace_dat.is_dir():
        raise FtraceError(f"--trace-dat {trace_dat}: not a directory")
    results = []
    for v in variants:
        system = boot_for(scenario, v, patching)
        results.append(run_scenario(scenario, v, schedule, quantum, system=system, patching=patching))
        if trace_dat is not None:  # one trace.dat a variant run, for trace-cmd report and KernelShark
            trace_dat.mkdir(parents=True, exist_ok=True)
            path = trace_dat / f"{Path(scenario_name).stem}-{v}.dat"
            size = system.write_tracedat(path, timeline=results[-1].timeline if timeline_events else None,
                                         version=dat_version, compression=compression)
            print(f"wrote {path} ({size} bytes)", file=sys.stderr)
    if as_json:
        if len(results) == 1:
            print(json.dumps(results[0].to_json(), indent=2))
        else:
            print(json.dumps({"variants": {r.variant: r.to_json() for r in results}}, indent=2))
        return results
    console = Console(highlight=False, soft_wrap=True)
    for result in results:
        _render_run(console, result, timeline)
    console.print(f"replay any of these with: --schedule '{results[-1].schedule}'", markup=False)
    return results


def _dat_format(version: int, compression: Optional[str], needs: Optional[str]) -> None:
    """--dat-version and --compression, refused before anything boots; needs names the option
    they go with when it was not given."""
    from .ringbuffer.tracedat7 import COMPRESSIONS, VERSIONS, codec

    if needs is not None and (version != 6 or compression is not None):
        raise FtraceError(f"--dat-version and --compression go with {needs}")
    if version not in VERSIONS:
        raise FtraceError(f"--dat-version {version}: expected one of {', '.join(map(str, VERSIONS))}")
    if compression is not None and compression not in COMPRESSIONS:
        raise FtraceError(f"--compression {compression!r}: expected one of {', '.join(COMPRESSIONS)}")
    if version == 6 and compression not in (None, "none"):
        raise FtraceError(f"--compression {compression}: trace.dat version 6 is never compressed (add --dat-version 7)")
    codec(compression)  # zstd: refused when this machine cannot make it


def _with_cmdline(scenario, cmdline: Optional[str]):
    """The scenario, booting with --cmdline instead of its own `cmdline:` when one is given
    (checked here, before anything boots)."""
    import dataclasses

    from .cmdline import parse_cmdline

    if cmdline is None:
        return scenario
    parse_cmdline(cmdline)
    return dataclasses.replace(scenario, cmdline=cmdline)


def _check_files(paths: list[Path]) -> None:
    """Refuse missing module files before booting anything."""
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such module file")


def _variants(variant: Optional[str]) -> list[str]:
    if variant is None:
        return list(VARIANTS)
    if variant not in VARIANTS:
        raise FtraceError(f"unknown variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    return [variant]


# Options race and run share.
ScheduleOpt = Annotated[Optional[str], typer.Option("--schedule", "-s",
                                                    help="Schedule string (default: the scenario's own).")]
QuantumOpt = Annotated[Optional[int], typer.Option("--quantum", "-q", help="Guest instructions per slice.")]
TimelineOpt = Annotated[bool, typer.Option("--timeline", "-t", help="Show the CPU 0 / CPU 1 timeline.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per run (several: under 'variants').")]
NaiveOpt = Annotated[bool, typer.Option("--naive-patching", help=NAIVE_HELP)]


@app.command()
def race(
    variant: Optional[str] = typer.Option(None, "--variant", "-v", help=VARIANT_HELP + " Default: every variant."),
    schedule: ScheduleOpt = None,
    quantum: QuantumOpt = None,
    timeline: TimelineOpt = False,
    as_json: JsonOpt = False,
    naive: NaiveOpt = False,
    cmdline: CmdlineOpt = None,
    trace_dat: Optional[Path] = typer.Option(None, "--trace-dat", help="Write each variant's trace as "
                                             "DIR/race-VARIANT.dat (trace.dat for trace-cmd report, KernelShark)."),
    timeline_events: bool = typer.Option(False, "--timeline-events", help="With --trace-dat: the timeline's rows "
                                         "go in too, as print events 'ftrace-emu: ...' of their CPU (the tool's "
                                         "account of the run, for KernelShark)."),
    dat_version: DatVersionOpt = 6,
    compression: CompressionOpt = None,
) -> None:
    """Reproduce the module-load race of the seed commit on each kernel variant.

    CPU 0 starts function tracing while CPU 1 loads race_mod, on the commit message's interleaving.

    Example: ftrace-emu race --timeline
    """
    from .kernels import KERNELS
    from .kernels.bugs import BUGS

    if timeline_events and trace_dat is None:
        raise FtraceError("--timeline-events goes with --trace-dat DIR")
    _dat_format(dat_version, compression, None if trace_dat is not None else "--trace-dat DIR")
    results = _run_variants("race", _variants(variant), schedule, quantum, timeline, as_json, naive, cmdline,
                            trace_dat, timeline_events, dat_version, compression)
    # The verdict: every variant as its tree says.  The kernels with the race must fail with it
    # on the commit message's schedule (on another, they may well not); the others never fail.
    race_bug = next(b for b in BUGS if b.scenario == "race")
    wrong = []
    for r in results:
        has = race_bug.present_in(KERNELS[r.variant])
        failed_with_it = not r.ok and r.killed_by == "ftrace_bug()" and race_bug.explains(r.bug or "")
        if (has and schedule is None and not failed_with_it) or (not has and not r.ok):
            wrong.append(r.variant)
    if not as_json:
        if wrong:
            print(f"race: {', '.join(wrong)} did not behave as its tree does", file=sys.stderr)
        else:
            print("race: every variant behaved as its tree does")
    if wrong:
        raise typer.Exit(1)


@app.command()
def run(
    scenario: str = typer.Argument(..., help="A scenario file, or a built-in: race, disabled-shutdown, patch-while-running."),
    variant: Optional[str] = typer.Option(None, "--variant", "-v", help=VARIANT_HELP + " Default: fixed."),
    schedule: ScheduleOpt = None,
    quantum: QuantumOpt = None,
    timeline: TimelineOpt = False,
    as_json: JsonOpt = False,
    naive: NaiveOpt = False,
    cmdline: CmdlineOpt = None,
) -> None:
    """Run a scenario file (or a built-in: race, disabled-shutdown, patch-while-running) on two CPUs and check the invariants.

    Example: ftrace-emu run my.scn --variant seed --schedule '1 0' --timeline
    """
    results = _run_variants(scenario, _variants(variant or "fixed"), schedule, quantum, timeline, as_json, naive,
                            cmdline)
    if not all(r.ok for r in results):
        raise typer.Exit(1)  # an invariant failed, or the schedule asked for was not followed


@app.command()
def explore(
    scenario: str = typer.Argument("race", help="A scenario file, or a built-in scenario name."),
    variant: Optional[str] = typer.Option(None, "--variant", "-v", help=VARIANT_HELP),
    all_variants: bool = typer.Option(False, "--all-variants", help="Explore every variant (the default)."),
    max_preemptions: Optional[int] = typer.Option(None, "--max-preemptions", "-k",
                                                  help="Preemption bound (default: the scenario's, else none: "
                                                       "every schedule)."),
    quantum: Optional[int] = typer.Option(None, "--quantum", "-q",
                                          help="Guest instructions per slice (default: the scenario's q=, else 1000)."),
    granularity: Optional[str] = typer.Option(None, "--granularity", "-g",
                                              help="Scheduling points: coarse (the default unless the scenario says), "
                                                   "record (also each call-site write), fine (also guest slices)."),
    naive: bool = typer.Option(False, "--naive-patching", help=NAIVE_HELP),
    reduction: Optional[bool] = typer.Option(None, "--reduction/--no-reduction",
                                             help="Partial-order reduction (default: on without a "
                                                  "preemption bound; with one, off unless asked for: then bounded "
                                                  "DPOR, checked against plain enumeration on small programs only)."),
    por: Optional[str] = typer.Option(None, "--por",
                                      help="How the reduction chooses: dpor (a branch only where a run shows a race, "
                                           "one run per class of equivalent runs; the default in one search, "
                                           "bounded or not) or sleep-sets (every CPU at every point, sleep sets cutting short "
                                           "what is covered; what --jobs and --cluster split)."),
    footprints: str = typer.Option("page", "--footprints",
                                   help="What the reduction knows of a step that runs guest code: page (the pages it "
                                        "touched, and the host state its hooks read) or coarse (everything). Same "
                                        "final states and failures."),
    verdict_cache: bool = typer.Option(True, "--verdict-cache/--no-verdict-cache",
                                       help="Check the invariants once per distinct final state (the default); "
                                            "--no-verdict-cache checks them after every run. Same results."),
    jobs: int = typer.Option(1, "--jobs", "-j",
                             help="Processes: one variant's search split among them (same results), or with several "
                                  "variants, that many explored at a time (and any processes left over split them)."),
    # (the help is rich markup: "\\[" shows a bracket)
    cluster: Optional[str] = typer.Option(None, "--cluster", metavar="ADDRESS",
                                          help="Explore on a Ray cluster, one worker per CPU (at most --jobs, if "
                                               "given): its head's host:port, auto (the one running here), or local "
                                               "(start one for this run). Same results. Needs the cluster extra: "
                                               "pip install -e '.\\[cluster]'."),
    runner: str = typer.Option("prefix", "--runner",
                               help="prefix: each schedule resumes from a paused fork on its prefix (the default); "
                                    "fork-from-boot: each starts from a fork of the booted state. Same results."),
    random_runs: Optional[int] = typer.Option(None, "--random", help="Seeded PCT: this many random schedules."),
    seed: int = typer.Option(0, "--seed", help="Seed for --random."),
    depth: int = typer.Option(3, "--depth", help="PCT bug depth d for --random."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Stop each variant after this many runs."),
    as_json: bool = typer.Option(False, "--json", help='One object: {"variants": {...}, "cross_replay": {...}}.'),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display, even on a terminal."),
    cmdline: CmdlineOpt = None,
) -> None:
    """Explore every schedule of a scenario (the race by default) on each kernel variant.

    The invariants are checked after each run; failing schedules replay with race/run --schedule.

    Example: ftrace-emu explore --all-variants --jobs 2
    """
    from .explore import GRANULARITIES, REDUCTIONS, RUNNERS, explore_random, explore_variant
    from .explore.footprints import FOOTPRINTS
    from .scenario import load_scenario

    scn = _with_cmdline(load_scenario(scenario), cmdline)
    granularity = granularity or scn.explore.get("granularity", "coarse")
    if max_preemptions is None and "max-preemptions" in scn.explore:
        max_preemptions = int(scn.explore["max-preemptions"])
    quantum = quantum if quantum is not None else scn.quantum
    patching = "naive" if naive else "breakpoints"
    if granularity not in GRANULARITIES:
        raise FtraceError(f"unknown granularity {granularity!r}: expected one of {', '.join(GRANULARITIES)}")
    if runner not in RUNNERS:
        raise FtraceError(f"unknown runner {runner!r}: expected one of {', '.join(RUNNERS)}")
    if por is not None and por not in REDUCTIONS:
        raise FtraceError(f"unknown --por {por!r}: expected one of {', '.join(REDUCTIONS)}")
    if footprints not in FOOTPRINTS:
        raise FtraceError(f"unknown --footprints {footprints!r}: expected one of {', '.join(FOOTPRINTS)}")
    for name, value in (("--quantum", quantum), ("--jobs", jobs), ("--depth", depth), ("--random", random_runs),
                        ("--limit", limit)):
        if value is None:
            continue
        if value < 1:
            raise FtraceError(f"{name} must be at least 1, got {value}")
    if max_preemptions is not None and max_preemptions < 0:
        raise FtraceError(f"--max-preemptions must be 0 or more, got {max_preemptions}")
    if variant is not None and all_variants:
        raise FtraceError("give --variant or --all-variants, not both")
    variants = _variants(variant)
    if reduction is None:
        reduction = max_preemptions is None
    if cluster is not None and random_runs is not None:
        raise FtraceError("--cluster explores every schedule: it does not take --random")
    console = Console(highlight=False, soft_wrap=True, stderr=True)
    # Variants in parallel cost nothing to split, so with as many jobs as variants (or
    # fewer) they go side by side; jobs left over split each variant's search.  On a cluster
    # the variants go one after another, each split among all its workers.
    at_once = 1 if cluster is not None else min(jobs, len(variants))
    per_variant = jobs // at_once
    split = cluster is not None or per_variant > 1
    if por is None and reduction:
        por = "dpor" if max_preemptions is not None or not split else "sleep-sets"
    if reduction and split and max_preemptions is not None:
        raise FtraceError("a reduction within --max-preemptions (bounded dpor) explores in one search: "
                          "without --jobs splitting a variant or --cluster, or with --no-reduction")
    if reduction and por == "dpor" and split:
        raise FtraceError("--por dpor explores in one search: with --jobs splitting a variant or --cluster, "
                          "use --por sleep-sets")
    if reduction and por == "sleep-sets" and max_preemptions is not None:
        raise FtraceError("--por sleep-sets within --max-preemptions could skip the only bounded runs of a class: "
                          "use --por dpor (in one search) or --no-reduction")
    on = None
    if cluster is not None:
        from .explore.cluster import Cluster

        on = Cluster(cluster, most=jobs if jobs > 1 else None)

    def one(v: str, progress=None):
        if random_runs is not None:
            return explore_random(scn, v, random_runs, seed, depth, granularity, quantum, progress,
                                  patching=patching)
        return explore_variant(scn, v, max_preemptions=max_preemptions, reduce=reduction, granularity=granularity,
                               quantum=quantum, jobs=per_variant, limit=limit, progress=progress, patching=patching,
                               runner=runner, cluster=on, por=por, footprints=footprints,
                               cache_verdicts=verdict_cache)

    try:
        reports = _explore_all(one, variants, at_once, console, as_json or quiet)
    finally:
        if on is not None:
            on.close()
    how = f"{por} reduction" if reduction else "plain enumeration"
    _print_explored(scenario, scn, reports, granularity, quantum, patching, max_preemptions, how, as_json, jobs)


def _explore_all(one, variants: list[str], at_once: int, console: Console, quiet: bool) -> list:
    """Each variant's report, at_once variants at a time, with a progress display on a terminal."""
    from .explore import map_forked

    parallel = len(variants) > 1 and at_once > 1
    if console.is_terminal and not quiet:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            tasks = [bar.add_task(f"{v}: starting") for v in variants]

            def moved(index: int, counts: tuple[int, int]) -> None:
                bar.update(tasks[index], description=f"{variants[index]}: {counts[0]} schedules, "
                                                     f"{counts[1]} failing")

            def counts(report) -> tuple[int, int]:
                return report.schedules, len(report.failing_schedules)

            if parallel:  # each child sends its counts over a pipe
                return map_forked(lambda v, tick: one(v, lambda r: tick(counts(r))), variants, at_once,
                                  progress=moved)
            return [one(v, lambda r, i=i: moved(i, counts(r))) for i, v in enumerate(variants)]
    if parallel:
        return map_forked(one, variants, at_once)
    return [one(v) for v in variants]


def _print_explored(scenario: str, scn, reports: list, granularity: str, quantum: int, patching: str,
                    max_preemptions: Optional[int], how: str, as_json: bool, jobs: int = 1) -> None:
    result = {"variants": {r.variant: r.to_json() for r in reports}, "patching": patching}
    by_name = {r.variant: r for r in reports}
    if len(reports) > 1:
        result["cross_replay"] = _cross(scn, by_name, granularity, quantum, patching, jobs)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out = Console(highlight=False, soft_wrap=True)
    table = Table(title=f"schedules of {scenario} ({granularity} granularity, "
                        f"{'bound ' + str(max_preemptions) if max_preemptions is not None else 'no preemption bound'}, "
                        f"{how})")
    for col in ("variant", "schedules", "failing", "failure kinds", "fewest preemptions", "seconds", "per s"):
        table.add_column(col)
    for r in reports:
        d = r.to_json()
        table.add_row(r.variant, str(d["schedules"]) + ("" if d["complete"] else "+"), str(d["failing"]),
                      str(len(d["failure_kinds"])), "-" if d["shortest_failing"] is None
                      else str(d["shortest_failing_preemptions"]), str(d["seconds"]), str(d["schedules_per_s"]))
    out.print(table)
    for r in reports:
        d = r.to_json()
        for kind, count in d["failure_kinds"].items():
            out.print(f"{r.variant}: {count} x {kind}", markup=False)
        if d["shortest_failing"]:
            naive_flag = " --naive-patching" if patching == "naive" else ""
            out.print(f"{r.variant}: replay the shortest with: ftrace-emu run {scenario} --variant {r.variant}"
                      f"{naive_flag} --schedule '{d['shortest_failing']}'", markup=False)
        if r.failing_seeds:
            out.print(f"{r.variant}: failing PCT seeds: {', '.join(map(str, r.failing_seeds))}", markup=False)
    for name, cr in result.get("cross_replay", {}).items():
        out.print(f"cross-replay {name}: {cr['failing']} of {cr['replayed']} fail", markup=False)


@app.command()
def mount(
    directory: Path = typer.Argument(..., help="An empty directory to mount the tracefs on."),
    variant: str = typer.Option("fixed", "--variant", "-v", help=VARIANT_HELP),
    module: list[Path] = typer.Option([], "--module", "-m", help="Load this module first (repeatable)."),
    activity: str = typer.Option("workload", "--activity", help="What the CPUs keep running: workload (the kernel "
                                                                 "workload), none, or 'call SYMBOL ARGS...'."),
    foreground: bool = typer.Option(False, "--foreground", help="Serve from this process until Ctrl-C."),
    cmdline: CmdlineOpt = None,
) -> None:
    """Mount the emulated system's tracefs (FUSE), for cat, echo and your own tools.

    Example: ftrace-emu mount /mnt/tracefs && cat /mnt/tracefs/available_tracers
    """
    import os

    from .tracefs.live import Activity, LiveSystem
    from .tracefs.mount import require_fuse, serve

    require_fuse()
    if not directory.is_dir():
        raise FtraceError(f"{directory}: not a directory")
    if os.path.ismount(directory):
        raise FtraceError(f"{directory}: already a mount point (ftrace-emu umount {directory} first)")
    _check_files(module)
    act = Activity.parse(activity)
    system = boot_system(_variants(variant)[0], cmdline=cmdline)
    for path in module:
        system.insmod(str(path))
    try:
        live = LiveSystem(system, act)
    except (emu_errors.SymbolError, emu_errors.BadCall) as exc:
        raise FtraceError(f"--activity {activity!r}: {exc}") from None
    where = f"{directory} ({system.tree.name}, activity: {activity})"
    if foreground:
        serve(live, str(directory), on_ready=lambda: print(f"tracefs mounted at {where}; Ctrl-C unmounts",
                                                           file=sys.stderr))
        return
    pid = _serve_in_background(live, directory)
    print(f"tracefs mounted at {where}, served by pid {pid}; ftrace-emu umount {directory} to stop",
          file=sys.stderr)


def _serve_in_background(live, directory: Path) -> int:
    """Fork a server for the mount; return its pid once the mount is up."""
    import os

    from .tracefs.mount import serve

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server: its own session, quiet, until unmounted
        os.close(r)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # what goes wrong is told through the pipe
            os.dup2(null, fd)
        try:
            serve(live, str(directory), on_ready=lambda: os.write(w, b"ready\n"))
            code = 0
        except BaseException as exc:  # told to the parent, which is still waiting
            os.write(w, f"{exc}\n".encode())
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as pipe:
        said = pipe.readline().strip()
    if said != "ready":
        raise FtraceError(f"{directory}: mount failed: {said or 'the server exited'}")
    return pid


@app.command("trace-cmd", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def trace_cmd(
    ctx: typer.Context,
    mountpoint: Optional[Path] = typer.Option(None, "--mount", help="A tracefs from ftrace-emu mount; without it a "
                                                                     "fresh system is mounted for this run."),
    variant: str = typer.Option("fixed", "--variant", help=VARIANT_HELP + " (with no --mount)"),
    cmdline: CmdlineOpt = None,
) -> None:
    """Run Debian's trace-cmd against the emulated tracefs (the rest of the line is trace-cmd's).

    Example: ftrace-emu trace-cmd --mount /mnt/tracefs start -p function -l 'vfs_*'
    """
    import tempfile

    from .tracefs.live import Activity, LiveSystem
    from .tracefs.mount import require_fuse
    from .tracefs.tracecmd import require_trace_cmd, run_trace_cmd

    require_trace_cmd()
    if mountpoint is not None:
        if cmdline is not None:
            raise FtraceError("--cmdline boots a fresh system: give it without --mount (or to ftrace-emu mount)")
        code = run_trace_cmd(mountpoint, list(ctx.args)).returncode
    else:
        require_fuse()
        with tempfile.TemporaryDirectory(prefix="ftrace-emu-tracefs-") as tmp:
            live = LiveSystem(boot_system(_variants(variant)[0], cmdline=cmdline), Activity.parse("workload"))
            _serve_in_background(live, Path(tmp))
            try:
                code = run_trace_cmd(tmp, list(ctx.args)).returncode
            finally:
                umount(Path(tmp))
    if code:
        raise typer.Exit(code)


@app.command()
def umount(directory: Path = typer.Argument(..., help="Where ftrace-emu mount put a tracefs.")) -> None:
    """Unmount a tracefs that ftrace-emu mount put at DIRECTORY; its server then exits."""
    import os
    import shutil
    import subprocess

    if not os.path.ismount(directory):
        raise FtraceError(f"{directory}: not mounted")
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    argv = [tool, "-u", str(directory)] if tool else ["umount", str(directory)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise FtraceError(f"{directory}: {(done.stderr or done.stdout).strip() or 'umount failed'}")


def _on_mount(mountpoint: Path, message: dict) -> None:
    from .tracefs.control import request

    answer = request(mountpoint, message)
    if "error" in answer:
        if answer.get("kind") == "system":
            print(answer["error"], file=sys.stderr)  # an oops, as the kernel prints it
            raise FtraceDead(f"{message['op']} oopsed (see above)")
        raise FtraceError(answer["error"])
    sys.stderr.write(answer.get("dmesg", ""))


@app.command()
def insmod(
    path: Path = typer.Argument(..., help="The module (.ko) to load."),
    mountpoint: Path = typer.Option(..., "--mount", help="The tracefs of the running system (ftrace-emu mount)."),
    cpu: int = typer.Option(0, "--cpu", help="The CPU that loads it."),
) -> None:
    """Load a module into a mounted, running system; its kernel messages are printed.

    Example: ftrace-emu insmod guest/modules/hello.ko --mount /mnt/tracefs
    """
    _check_files([path])
    _on_mount(mountpoint, {"op": "insmod", "path": str(path.resolve()), "cpu": cpu})


@app.command()
def rmmod(
    name: str = typer.Argument(..., help="The loaded module's name."),
    mountpoint: Path = typer.Option(..., "--mount", help="The tracefs of the running system (ftrace-emu mount)."),
    cpu: int = typer.Option(0, "--cpu", help="The CPU that unloads it."),
) -> None:
    """Unload a module from a mounted, running system."""
    _on_mount(mountpoint, {"op": "rmmod", "name": name, "cpu": cpu})


def _cross(scn, reports: dict, granularity: str, quantum: int, patching: str, jobs: int = 1) -> dict:
    """Every failing schedule of each variant, replayed on the others; with naive patching,
    also on the same kernel with breakpoints.  With jobs > 1, that many replays of a
    variant's schedules on another go side by side."""
    from .explore import cross_replay, map_forked

    tasks = []  # (name, source variant, where to replay, patching there)
    for src, report in reports.items():
        if not report.failing_schedules:
            continue
        tasks += [(f"{src}_on_{dst}", src, dst, patching) for dst in reports if dst != src]
        if patching == "naive":
            tasks.append((f"{src}_with_breakpoints", src, src, "breakpoints"))

    def replay(task: tuple) -> dict:
        _, src, dst, how = task
        return cross_replay(scn, reports[src].failing_schedules, dst, granularity, quantum, how)

    results = map_forked(replay, tasks, jobs) if jobs > 1 and len(tasks) > 1 else [replay(t) for t in tasks]
    return {task[0]: result for task, result in zip(tasks, results)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --traceback is accepted after the command too (before a "--" that ends the options).
    end = argv.index("--") if "--" in argv else len(argv)
    if "--traceback" in argv[1:end]:
        argv.remove("--traceback")
        argv.insert(0, "--traceback")
    try:
        # Without standalone mode click hands back a typer.Exit's code instead of raising it.
        code = app(args=argv, standalone_mode=False)
        if code == 130:  # click turned a Ctrl-C into its exit status
            raise KeyboardInterrupt
        return code if isinstance(code, int) else 0
    except BrokenPipeError:
        # The reader went away (`| head`): as other tools, stop quietly and succeed.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        command = next((a for a in argv if not a.startswith("-")), "ftrace-emu")
        print(f"ftrace-emu: interrupted during {command}", file=sys.stderr)
        return 130
    except FtraceDead as exc:  # the system failed, not the input
        return _fail(exc, 1)
    except _BAD_INPUT as exc:
        return _fail(exc, 2)
    except emu_errors.GuestFault as exc:
        print(exc.report, file=sys.stderr)
        return _fail(exc, 1, quiet=True)
    except emu_errors.EmuError as exc:
        return _fail(exc, 1)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        return 1
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "show"):
            exc.show()
            return code
        raise


def _fail(exc: BaseException, code: int, quiet: bool = False) -> int:
    if _state["traceback"]:
        import traceback

        traceback.print_exception(exc)
    elif not quiet:
        print(f"ftrace-emu: error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
