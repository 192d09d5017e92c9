#!/usr/bin/env python3
"""Benchmark the cost of tracing a call-heavy guest workload, in ratios from one run.

    python scripts/bench_trace.py [--iterations N] [--json]

bench_calls(N) (guest/kernel/bench.c: 3 calls an iteration) runs untraced, with the function
tracer on every function, and with a filter selecting one function, for each recorder: the
in-guest recorder (function_trace_call writes per-CPU rings; the trace is drained after the
run and counted) and the host hook.  Prints traced calls per second and slowdowns against the
untraced run.  With --json the last line holds traced_calls_per_s, slowdown_all and
slowdown_one (guest recorder).  Targets: 1,000,000 traced calls/s; tracing everything at
most 5x slower than untraced emulation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ftrace_core  # noqa: E402


def timed_run(recorder: str, mode: str, iterations: int) -> tuple[float, int, float]:
    """Seconds for bench_calls(iterations), the number of events recorded, and the seconds
    it then took to drain them into the trace buffer (reading the trace, not tracing: the
    guest rings keep the newest 32,768 events a CPU, as the kernel's overwrite mode)."""
    s = ftrace_core.boot(recorder=recorder, buffer_entries=1 << 20)
    if mode == "one":
        s.tracefs.write("set_ftrace_filter", "bench_leaf")
    if mode != "off":
        s.tracefs.write("current_tracer", "function")
    s.call("bench_calls", 1000)  # translate the code once
    s.tracefs.write("trace", "")
    start = time.perf_counter()
    s.call("bench_calls", iterations)
    ran = time.perf_counter() - start
    events = s.buffer.entries_written  # drains the guest rings
    return ran, events, time.perf_counter() - start - ran


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.iterations
    calls = 3 * n
    base, _, _ = timed_run("guest", "off", n)
    rows = []
    results = {}
    for recorder in ("guest", "hook"):
        iters = n if recorder == "guest" else max(1000, n // 50)
        scale = n / iters
        for mode in ("all", "one"):
            secs, events, drain = timed_run(recorder, mode, iters)
            secs *= scale
            events = int(events * scale)
            rows.append((f"{recorder} recorder, {mode}", events, secs, events / secs, drain))
            results[(recorder, mode)] = (secs, events)
    print(f"bench_calls({n}): {calls:,} calls; untraced {base:.3f} s = {calls / base:,.0f} calls/s")
    print(f"{'mode':<24} {'events':>10} {'seconds':>8} {'traced calls/s':>15} {'slowdown':>9} {'drain s':>8}")
    for name, events, secs, rate, drain in rows:
        print(f"{name:<24} {events:>10,} {secs:>8.3f} {rate:>15,.0f} {secs / base:>8.1f}x {drain:>8.3f}")
    g_all, g_one = results[("guest", "all")], results[("guest", "one")]
    traced_rate = g_all[1] / g_all[0]
    print(f"against targets: {traced_rate / 1e6:.2f}x of 1,000,000 traced calls/s; "
          f"slowdown {g_all[0] / base:.1f}x (target at most 5x)")
    if args.json:
        print(json.dumps({"traced_calls_per_s": round(traced_rate), "slowdown_all": round(g_all[0] / base, 2),
                          "slowdown_one": round(g_one[0] / base, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
