#!/usr/bin/env python3
"""Benchmark schedule exploration of the race scenario, in ratios from one run.

    python scripts/bench_explore.py [--variant legacy] [--limit N] [--json]

Measures plain enumeration bounded at 2 preemptions, exploration of every schedule with the
sleep-set reduction, and the cost of restoring the booted state for one schedule (a fork of
the prepared process, and the child's exit); plain enumeration again with --jobs set to the
number of cores.  With --json the last line holds schedules_per_s (one process),
schedules_per_s_reduced, schedules_per_s_jobs, jobs and restore_us.  Anchor: CHESS ~300 schedules/s;
target here 1,000.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftrace_core.explore import Prepared, explore_variant  # noqa: E402
from ftrace_core.scenario import load_scenario  # noqa: E402


def restore_cost_us(variant: str, n: int = 200) -> float:
    prepared = Prepared(load_scenario("race"), variant, "coarse", 1000)  # noqa: F841 (the state forked)
    start = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="legacy")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="stop each exploration after N schedules (a quick check of the script)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    race = load_scenario("race")
    plain = explore_variant(race, args.variant, max_preemptions=2, reduce=False, limit=args.limit)
    jobs = os.cpu_count() or 1
    parallel = explore_variant(race, args.variant, max_preemptions=2, reduce=False, limit=args.limit, jobs=jobs)
    reduced = explore_variant(race, args.variant, reduce=True, limit=args.limit)
    restore = restore_cost_us(args.variant, 200 if args.limit is None else 5)
    # Rates are of runs executed (a run is what costs); `schedules` counts the distinct ones.
    per_run_ms = 1000 * plain.seconds / max(plain.runs, 1)
    rows = [
        ("plain, bound 2", plain.schedules, len(plain.failing_schedules), plain.seconds, plain.runs / plain.seconds),
        (f"plain, --jobs {jobs}", parallel.schedules, len(parallel.failing_schedules), parallel.seconds,
         parallel.runs / parallel.seconds),
        ("reduced, unbounded", reduced.schedules, len(reduced.failing_schedules), reduced.seconds,
         reduced.runs / reduced.seconds),
    ]
    print(f"race scenario on {args.variant}, coarse granularity, one process unless --jobs")
    print(f"{'mode':<20} {'schedules':>9} {'failing':>8} {'seconds':>8} {'runs/s':>7}")
    for name, n, failing, secs, rate in rows:
        print(f"{name:<20} {n:>9} {failing:>8} {secs:>8.2f} {rate:>7.1f}")
    print(f"restoring the booted state (fork + exit): {restore:.0f} us; "
          f"a whole schedule: {per_run_ms:.1f} ms, so restoring is {1000 * restore / 1e6 / per_run_ms * 100:.1f}%")
    print(f"against targets: {rows[0][4] / 1000:.3f}x of 1,000 schedules/s, {rows[0][4] / 300:.3f}x of CHESS's ~300/s")
    if args.json:
        print(json.dumps({"schedules_per_s": round(rows[0][4], 1), "schedules_per_s_reduced": round(rows[2][4], 1),
                          "schedules_per_s_jobs": round(rows[1][4], 1), "jobs": jobs,
                          "restore_us": round(restore, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
