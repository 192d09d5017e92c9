#!/usr/bin/env python3
"""Compare the emulator's traced-call rate with uftrace on the same workload built natively.

    python scripts/bench_native.py [--calls N] [--json]

guest/kernel/bench.c (plain C) is compiled natively, as the guest is, with
gcc -O2 -pg -mfentry -fno-optimize-sibling-calls, together with a small main() that prints
bench_calls(N) (N iterations, 3 calls each: bench_mid and two bench_leaf), and once more
without -pg as a pure baseline.  In one run it measures:

  * the -pg binary untraced (its __fentry__ calls go to glibc's gmon, which only counts),
    and the binary without -pg (best of a few runs each, process start-up included);
  * the -pg binary under `uftrace record --no-libcall`, checking with `uftrace report` that
    every bench_* call (~3N) was recorded;
  * the emulator's function tracer on bench_calls(M) with the in-guest recorder (M = 200,000)
    and with the host-hook recorder (M = 50,000), after a warm-up call.

It prints a table (mode, calls, seconds, calls/s), uftrace's overhead per call and the ratios
emulator / uftrace.  With --json the last line holds uftrace_calls_per_s,
uftrace_overhead_ns_per_call, native_untraced_calls_per_s (the -pg binary untraced),
native_nopg_calls_per_s, emu_traced_calls_per_s, emu_hook_traced_calls_per_s and
ratio_emu_to_uftrace (guest recorder) and ratio_emu_hook_to_uftrace.

Needs gcc and uftrace (Debian: apt-get install uftrace); without uftrace it reports itself
skipped and exits 0.  Temporary files (binaries, gmon.out, uftrace.data) go in a temporary
directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_C = ROOT / "guest" / "kernel" / "bench.c"
CALLS_PER_ITER = 3
EMU_GUEST_ITERS = 200_000
EMU_HOOK_ITERS = 50_000
UNTRACED_REPEATS = 5
CFLAGS = ["-O2", "-fno-optimize-sibling-calls"]
PG_FLAGS = ["-pg", "-mfentry"]

MAIN_C = r"""
#include <stdio.h>
#include <stdlib.h>

long bench_calls(long n);

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 2000000;

	printf("%ld\n", bench_calls(n));
	return 0;
}
"""

SKIP_LINE = "bench_native: skipped: uftrace is not installed (apt-get install uftrace)"


def build(tmp: Path, name: str, flags: list[str]) -> Path:
    out = tmp / name
    subprocess.run(["gcc", *CFLAGS, *flags, "-o", str(out), str(BENCH_C), str(tmp / "main.c")],
                   check=True)
    return out


def run_timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """Wall time of one run and its stdout.  cwd is the temp dir: a -pg binary run untraced
    writes gmon.out there."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.PIPE, text=True)
    return time.perf_counter() - start, proc.stdout


def best_of(cmd: list[str], cwd: Path, repeats: int) -> tuple[float, str]:
    runs = [run_timed(cmd, cwd) for _ in range(repeats)]
    return min(r[0] for r in runs), runs[0][1]


def uftrace_calls(data: Path) -> dict[str, int]:
    """Calls per bench_* function from `uftrace report` (its Calls column)."""
    out = subprocess.run(["uftrace", "report", "-d", str(data)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    calls: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"\s*\S+\s+\S+\s+\S+\s+\S+\s+(\d+)\s+(bench_\w+)\s*$", line)
        if m:
            calls[m.group(2)] = int(m.group(1))
    return calls


def emu_rate(recorder: str, iters: int) -> tuple[int, float, int, int]:
    """(traced calls, seconds for s.call, events the tracer saw, bench_calls(1000)) on the
    emulator with the function tracer on."""
    import ftrace_core

    s = ftrace_core.boot(recorder=recorder)
    s.tracefs.write("current_tracer", "function")
    warm = s.call("bench_calls", 1000)
    before = s.buffer.entries_written  # drains the warm-up's events first
    start = time.perf_counter()
    s.call("bench_calls", iters, budget=None)
    seconds = time.perf_counter() - start
    seen = s.buffer.entries_written - before  # events recorded or lost to wrapping
    return CALLS_PER_ITER * iters, seconds, seen, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2_000_000, metavar="N",
                        help="iterations of bench_calls natively (3 calls each; default 2,000,000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.calls

    if shutil.which("uftrace") is None:
        print(SKIP_LINE)
        if args.json:
            print(json.dumps({"skipped": "uftrace not installed"}))
        return 0

    version = subprocess.run(["uftrace", "--version"], check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench_native.") as tmpname:
        tmp = Path(tmpname)
        (tmp / "main.c").write_text(MAIN_C)
        pg = build(tmp, "bench", PG_FLAGS)
        nopg = build(tmp, "bench_nopg", [])

        t_nopg, out_nopg = best_of([str(nopg), str(n)], tmp, UNTRACED_REPEATS)
        t_pg, out_pg = best_of([str(pg), str(n)], tmp, UNTRACED_REPEATS)
        data = tmp / "uftrace.data"
        ucmd = ["uftrace", "record", "--no-libcall", "-d", str(data), str(pg), str(n)]
        t_uf, out_uf = run_timed(ucmd, tmp)
        recorded = uftrace_calls(data)
        _, native_1000 = run_timed([str(nopg), "1000"], tmp)

    native_calls = CALLS_PER_ITER * n
    uf_recorded = recorded.get("bench_mid", 0) + recorded.get("bench_leaf", 0)
    emu_calls, t_emu, emu_seen, emu_1000 = emu_rate("guest", EMU_GUEST_ITERS)
    hook_calls, t_hook, hook_seen, _ = emu_rate("hook", EMU_HOOK_ITERS)

    rate_nopg = native_calls / t_nopg
    rate_pg = native_calls / t_pg
    rate_uf = native_calls / t_uf
    rate_emu = emu_calls / t_emu
    rate_hook = hook_calls / t_hook
    overhead_ns = (t_uf - t_pg) / native_calls * 1e9

    print(f"workload: bench_calls(n) from {BENCH_C.relative_to(ROOT)}, {CALLS_PER_ITER} calls per iteration")
    print(f"{version}")
    print(f"uftrace command: {' '.join(ucmd[:3])} -d <tmp>/uftrace.data <tmp>/bench {n}")
    print(f"{'mode':<32} {'calls':>10} {'seconds':>8} {'calls/s':>13}")
    rows = [
        ("native, no -pg (best of 5)", native_calls, t_nopg, rate_nopg),
        ("native -pg, untraced (best of 5)", native_calls, t_pg, rate_pg),
        ("native -pg, uftrace record", native_calls, t_uf, rate_uf),
        ("emulator, function, guest rec.", emu_calls, t_emu, rate_emu),
        ("emulator, function, hook rec.", hook_calls, t_hook, rate_hook),
    ]
    for name, calls, secs, rate in rows:
        print(f"{name:<32} {calls:>10,} {secs:>8.3f} {rate:>13,.0f}")
    print(f"uftrace recorded: {', '.join(f'{k} {v:,}' for k, v in sorted(recorded.items()))} "
          f"(bench_mid + bench_leaf = {uf_recorded:,}, expected {native_calls:,})")
    print(f"emulator tracer events: guest rec. {emu_seen:,} (expected {emu_calls + 1:,} with bench_calls), "
          f"hook rec. {hook_seen:,} (expected {hook_calls + 1:,})")
    if uf_recorded != native_calls:
        print(f"warning: uftrace recorded {uf_recorded:,} bench_mid/bench_leaf calls, not {native_calls:,}")
    if not (out_nopg == out_pg == out_uf):
        print(f"warning: native results differ: {out_nopg.strip()} / {out_pg.strip()} / {out_uf.strip()}")
    if int(native_1000) & ((1 << 64) - 1) != emu_1000 & ((1 << 64) - 1):
        print(f"warning: bench_calls(1000) is {native_1000.strip()} natively but {emu_1000} in the emulator")
    print(f"uftrace overhead per call: {overhead_ns:.1f} ns "
          f"((uftrace - untraced -pg) / {native_calls:,}; process start-up and data writing included)")
    print(f"emulator (guest recorder) / uftrace: {rate_emu / rate_uf:.3f}x; "
          f"emulator (hook recorder) / uftrace: {rate_hook / rate_uf:.3f}x")
    if args.json:
        print(json.dumps({
            "uftrace_calls_per_s": round(rate_uf),
            "uftrace_overhead_ns_per_call": round(overhead_ns, 1),
            "native_untraced_calls_per_s": round(rate_pg),
            "native_nopg_calls_per_s": round(rate_nopg),
            "emu_traced_calls_per_s": round(rate_emu),
            "emu_hook_traced_calls_per_s": round(rate_hook),
            "ratio_emu_to_uftrace": round(rate_emu / rate_uf, 4),
            "ratio_emu_hook_to_uftrace": round(rate_hook / rate_uf, 4),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
