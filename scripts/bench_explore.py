#!/usr/bin/env python3
"""Benchmark schedule exploration of the race scenario, in ratios from one run.

    python scripts/bench_explore.py [--variants legacy,seed] [--limit N] [--json]

What users wait for is the verdict: every schedule of the race (coarse granularity, the
sleep-set reduction, no bound) explored on every variant, with the default runner (each
schedule resumes from a paused fork on its prefix, emu.forktree) and with the old one (each
schedule forked from the booted state), one after the other for each variant so that both
meet the same spell of a shared machine; the two must find the same runs.  Then plain
enumeration bounded at 2 preemptions on legacy, in one process and with --jobs set to the
number of cores, and the cost of restoring the booted state (a fork and the child's exit).

With --json the last line holds verdict_s (new runner, all variants, one process),
verdict_s_old (the old runner, same work, same run), verdict_ratio, runs_per_s and
schedules_per_s_covered (new runner, over the verdict), per-variant figures,
record_k2_verdict_s and cluster_overhead_s (null until those are built: see "notes"), and
the older figures schedules_per_s (plain, bound 2, one process), schedules_per_s_jobs,
schedules_per_s_reduced (the default runner, unbounded), jobs and restore_us.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftrace_core.explore import Prepared, explore_variant  # noqa: E402
from ftrace_core.kernels import VARIANTS  # noqa: E402
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


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped descendants (less noisy than wall time on
    a shared machine; the tree's processes are all reaped, through their parents)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(**kwargs):
    cpu = cpu_seconds()
    report = explore_variant(load_scenario("race"), **kwargs)
    return report, cpu_seconds() - cpu


def same_runs(a, b) -> bool:
    return ((a.runs, a.pruned, a.seen, a.final_states, a.kinds, a.failing_schedules)
            == (b.runs, b.pruned, b.seen, b.final_states, b.kinds, b.failing_schedules))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="stop each exploration after N runs (a quick check of the script)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    variants = args.variants.split(",")

    print("the verdict: race scenario, coarse granularity, sleep-set reduction, unbounded, one process")
    print(f"{'variant':<9} {'runs':>6} {'schedules':>9} {'failing':>7} {'states':>6} {'old s':>7} {'new s':>7} "
          f"{'ratio':>6} {'old cpu':>7} {'new cpu':>7} {'runs/s':>7} {'ckpts':>6} same")
    per_variant = {}
    for v in variants:  # warm up (images read, caches filled) so that neither runner pays it
        explore_variant(load_scenario("race"), v, limit=1, runner="fork-from-boot")
    for v in variants:
        new, new_cpu = timed(variant=v, limit=args.limit)
        old, old_cpu = timed(variant=v, limit=args.limit, runner="fork-from-boot")
        same = same_runs(new, old)
        per_variant[v] = {"runs": new.runs + new.pruned, "schedules": new.schedules,
                          "failing": len(new.failing_schedules), "final_states": len(new.final_states),
                          "seconds": round(new.seconds, 2), "seconds_old": round(old.seconds, 2),
                          "cpu_s": round(new_cpu, 2), "cpu_s_old": round(old_cpu, 2),
                          "checkpoints": new.checkpoints, "identical": same}
        print(f"{v:<9} {new.runs + new.pruned:>6} {new.schedules:>9} {len(new.failing_schedules):>7} "
              f"{len(new.final_states):>6} {old.seconds:>7.2f} {new.seconds:>7.2f} {old.seconds / new.seconds:>5.2f}x "
              f"{old_cpu:>7.2f} {new_cpu:>7.2f} {(new.runs + new.pruned) / new.seconds:>7.1f} {new.checkpoints:>6} "
              f"{'yes' if same else 'NO'}", flush=True)
    verdict = sum(d["seconds"] for d in per_variant.values())
    verdict_old = sum(d["seconds_old"] for d in per_variant.values())
    runs = sum(d["runs"] for d in per_variant.values())
    schedules = sum(d["schedules"] for d in per_variant.values())
    cpu, cpu_old = sum(d["cpu_s"] for d in per_variant.values()), sum(d["cpu_s_old"] for d in per_variant.values())
    print(f"{'all':<9} {runs:>6} {schedules:>9} {'':>7} {'':>6} {verdict_old:>7.2f} {verdict:>7.2f} "
          f"{verdict_old / verdict:>5.2f}x {cpu_old:>7.2f} {cpu:>7.2f} {runs / verdict:>7.1f}")

    race = load_scenario("race")
    plain = explore_variant(race, "legacy", max_preemptions=2, reduce=False, limit=args.limit)
    jobs = os.cpu_count() or 1
    parallel = explore_variant(race, "legacy", max_preemptions=2, reduce=False, limit=args.limit, jobs=jobs)
    restore = restore_cost_us("legacy", 200 if args.limit is None else 5)
    print("\nplain enumeration, legacy, bound 2 (the runs a bound allows branch early: little prefix to share)")
    for name, r in (("one process", plain), (f"--jobs {jobs}", parallel)):
        print(f"  {name:<12} {r.schedules:>5} schedules {len(r.failing_schedules):>3} failing "
              f"{r.seconds:>6.2f} s {r.runs / r.seconds:>6.1f} runs/s")
    print(f"restoring the booted state (fork + exit): {restore:.0f} us")
    notes = {"record_k2_verdict_s": "not built yet: record granularity, bound 2, to a verdict (issue #18, item 4)",
             "cluster_overhead_s": "not built yet: the multi-machine engine (issue #18)"}
    for key, note in notes.items():
        print(f"{key}: {note}")
    reduced = per_variant.get("legacy") or next(iter(per_variant.values()))
    if args.json:
        print(json.dumps({
            "verdict_s": round(verdict, 2), "verdict_s_old": round(verdict_old, 2),
            "verdict_ratio": round(verdict_old / verdict, 2), "verdict_cpu_s": round(cpu, 2),
            "verdict_cpu_s_old": round(cpu_old, 2), "runs_per_s": round(runs / verdict, 1),
            "schedules_per_s_covered": round(schedules / verdict, 1), "variants": per_variant,
            "record_k2_verdict_s": None, "cluster_overhead_s": None, "notes": notes,
            "schedules_per_s": round(plain.runs / plain.seconds, 1),
            "schedules_per_s_jobs": round(parallel.runs / parallel.seconds, 1),
            "schedules_per_s_reduced": round(reduced["runs"] / reduced["seconds"], 1),
            "jobs": jobs, "restore_us": round(restore, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
