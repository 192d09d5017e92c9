#!/usr/bin/env python3
"""Benchmark schedule exploration of the race scenario, in ratios from one run.

    python scripts/bench_explore.py [--variants legacy,seed] [--limit N] [--no-cluster] [--json]

What users wait for is the verdict: every schedule of the race (coarse granularity, no
bound) explored on every variant, the way `explore` does it by default (each schedule
resumes from a paused fork on its prefix, emu.forktree; the reduction is DPOR, emu.dpor,
over page-precise footprints, ftrace_core.explore.footprints; the invariants are checked
once per final state) and the way it did before issue #18 (each schedule forked from the
booted state, sleep sets alone, guest code touching everything, every run checked), one
after the other for each variant so that both meet the same spell of a shared machine; the
two must reach the same verdict (the same final states and failure kinds).  Then the same
verdict with two processes, as `explore --all-variants --jobs 2` does it (variants side by
side) and with each variant's search split between the two (sleep sets: a DPOR search does
not split); the cluster's overhead; plain enumeration bounded at 2 preemptions on legacy, in
one process and with --jobs set to the number of cores; and the cost of restoring the
booted state (a fork and the child's exit).

The cluster's overhead: legacy's verdict on a Ray cluster started here (`--cluster local`:
one actor per core, each booting the variant) against the same search (sleep sets, which a
cluster splits) in one process, back to back.  cluster_overhead_s is the cluster's wall time from before ray.init() to after the
cluster is shut down (start, actors, boot, exploring, shutting down) minus the one-process
wall time; the cluster's actors explore in parallel, so its exploring alone is best compared
with --jobs 2 on the same variant (both in "cluster").  Without Ray (or with --no-cluster)
it is null, and "notes" says why.

With --json the last line holds verdict_s (the default, all variants, one process),
verdict_s_old (as before issue #18, same work, same run), verdict_ratio, runs_per_s and
schedules_per_s_covered (the default, over the verdict), per-variant figures,
verdict_jobs2_s (what --jobs 2 takes) and verdict_jobs2_split_s, cluster_overhead_s and
"cluster", record_k2_verdict_s and "record_k2" (per variant), and the older figures
schedules_per_s (plain, bound 2, one process), schedules_per_s_jobs,
schedules_per_s_reduced (the default runner, unbounded), jobs and restore_us.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftrace_core.explore import Prepared, explore_variant, map_forked  # noqa: E402
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


#: How explore ran before issue #18: the runner, the reduction, what it knew of steps.
OLD = {"runner": "fork-from-boot", "por": "sleep-sets", "footprints": "coarse", "cache_verdicts": False}


def same_verdict(a, b) -> bool:
    """The same final states and the same failure kinds (the runs that reach them may
    differ: each reduction picks its own representatives)."""
    return (a.complete and b.complete and a.final_states == b.final_states and set(a.kinds) == set(b.kinds)
            and bool(a.failing_schedules) == bool(b.failing_schedules))


def same_runs(a, b) -> bool:
    return ((a.runs, a.pruned, a.seen, a.final_states, a.kinds, a.failing_schedules, a.failing_preemptions)
            == (b.runs, b.pruned, b.seen, b.final_states, b.kinds, b.failing_schedules, b.failing_preemptions))


def verdict_with_two(variants: list[str], limit: int | None, split: bool) -> tuple[float, list]:
    """Wall time of every variant's verdict with two processes: the variants side by side
    (as `explore --all-variants --jobs 2` does), or each variant's search split in two."""
    race = load_scenario("race")
    start = time.perf_counter()
    if split:  # sleep sets: a DPOR search does not split
        reports = [explore_variant(race, v, limit=limit, jobs=2) for v in variants]
    else:
        reports = map_forked(lambda v: explore_variant(race, v, limit=limit), variants, 2)
    return time.perf_counter() - start, reports


def record_verdict(variants: list[str], limit: int | None) -> tuple[float, dict]:
    """Wall time of the race's verdict at record granularity (a point at each call-site
    write) within two preemptions, on every variant, two side by side: bounded DPOR (what
    `explore -g record -k 2 --reduction` does), with the site footprints."""
    race = load_scenario("race")
    start = time.perf_counter()
    reports = map_forked(lambda v: explore_variant(race, v, granularity="record", max_preemptions=2, reduce=True,
                                                   limit=limit), variants, 2)
    return time.perf_counter() - start, dict(zip(variants, reports))


def cluster_overhead(variant: str, limit: int | None) -> dict:
    """Legacy's verdict in one process, with --jobs 2, and on a local Ray cluster, back to back."""
    from ftrace_core.explore.cluster import Cluster

    race = load_scenario("race")
    one = explore_variant(race, variant, limit=limit, por="sleep-sets")  # the search a cluster splits
    jobs2 = explore_variant(race, variant, limit=limit, jobs=2)
    start = time.perf_counter()
    with Cluster("local") as cluster:
        started = time.perf_counter()
        on = explore_variant(race, variant, limit=limit, cluster=cluster)
        explored = time.perf_counter()
        workers = cluster.size
    total = time.perf_counter() - start
    return {"variant": variant, "one_process_s": round(one.seconds, 2), "jobs2_s": round(jobs2.seconds, 2),
            "total_s": round(total, 2), "start_s": round(started - start, 2),
            "explore_s": round(explored - started, 2), "shutdown_s": round(start + total - explored, 2),
            "workers": workers, "identical": same_runs(on, one) and same_runs(jobs2, one),
            "overhead_s": round(total - one.seconds, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="stop each exploration after N runs (a quick check of the script)")
    parser.add_argument("--no-cluster", action="store_true", help="leave out the Ray cluster (its start takes seconds)")
    parser.add_argument("--no-record", action="store_true",
                        help="leave out the record-granularity verdict (minutes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    variants = args.variants.split(",")

    print("the verdict: race scenario, coarse granularity, unbounded, one process; new: as explore does it "
          "(prefix runner, DPOR, page footprints, verdict cache), old: as before issue #18 (fork from boot, sleep "
          "sets, coarse footprints)")
    print(f"{'variant':<9} {'old runs':>8} {'runs':>6} {'failing':>7} {'states':>6} {'old s':>7} {'new s':>7} "
          f"{'ratio':>6} {'old cpu':>7} {'new cpu':>7} {'runs/s':>7} {'hits':>5} same")
    per_variant = {}
    for v in variants:  # warm up (images read, caches filled) so that neither runner pays it
        explore_variant(load_scenario("race"), v, limit=1, runner="fork-from-boot")
    for v in variants:
        new, new_cpu = timed(variant=v, limit=args.limit)
        old, old_cpu = timed(variant=v, limit=args.limit, **OLD)
        same = same_verdict(new, old) if args.limit is None else True  # (a cut-short search has no verdict)
        per_variant[v] = {"runs": new.runs + new.pruned, "pruned": new.pruned, "schedules": new.schedules,
                          "runs_old": old.runs + old.pruned, "pruned_old": old.pruned,
                          "failing": len(new.failing_schedules), "final_states": len(new.final_states),
                          "seconds": round(new.seconds, 2), "seconds_old": round(old.seconds, 2),
                          "cpu_s": round(new_cpu, 2), "cpu_s_old": round(old_cpu, 2),
                          "checkpoints": new.checkpoints, "verdict_hits": new.verdict_hits, "identical": same}
        print(f"{v:<9} {old.runs + old.pruned:>8} {new.runs + new.pruned:>6} {len(new.failing_schedules):>7} "
              f"{len(new.final_states):>6} {old.seconds:>7.2f} {new.seconds:>7.2f} {old.seconds / new.seconds:>5.2f}x "
              f"{old_cpu:>7.2f} {new_cpu:>7.2f} {(new.runs + new.pruned) / new.seconds:>7.1f} {new.verdict_hits:>5} "
              f"{'yes' if same else 'NO'}", flush=True)
    verdict = sum(d["seconds"] for d in per_variant.values())
    verdict_old = sum(d["seconds_old"] for d in per_variant.values())
    runs = sum(d["runs"] for d in per_variant.values())
    schedules = sum(d["schedules"] for d in per_variant.values())
    cpu, cpu_old = sum(d["cpu_s"] for d in per_variant.values()), sum(d["cpu_s_old"] for d in per_variant.values())
    runs_old = sum(d["runs_old"] for d in per_variant.values())
    print(f"{'all':<9} {runs_old:>8} {runs:>6} {'':>7} {'':>6} {verdict_old:>7.2f} {verdict:>7.2f} "
          f"{verdict_old / verdict:>5.2f}x {cpu_old:>7.2f} {cpu:>7.2f} {runs / verdict:>7.1f}")

    print("\nthe verdict with two processes (variants side by side, as --jobs 2 does; or each split in two)")
    jobs2_s, side = verdict_with_two(variants, args.limit, split=False)
    split_s, split = verdict_with_two(variants, args.limit, split=True)
    # side by side: DPOR; split: sleep sets (tests/test_explore_parallel.py checks a split search
    # against the same one in one process, run for run)
    jobs2_same = args.limit is not None or all(same_verdict(a, b) for a, b in zip(side, split))
    print(f"  side by side {jobs2_s:7.2f} s   split {split_s:7.2f} s   one process {verdict:7.2f} s   "
          f"same runs {'yes' if jobs2_same else 'NO'}", flush=True)

    notes = {}
    record_s, record = None, {}
    if args.no_record:
        notes["record_k2_verdict_s"] = "left out (--no-record)"
    else:
        record_s, reports = record_verdict(variants, args.limit)
        notes["record_k2_verdict_s"] = ("wall time, two processes, of the race at record granularity within two "
                                        "preemptions on every variant: bounded DPOR with site footprints")
        print("\nthe race at record granularity within two preemptions (bounded DPOR, two variants side by side)")
        for v, r in reports.items():
            record[v] = {"runs": r.runs + r.pruned, "pruned": r.pruned, "failing": len(r.failing_schedules),
                         "final_states": len(r.final_states), "seconds": round(r.seconds, 2), "complete": r.complete}
            print(f"  {v:<9} {r.runs + r.pruned:>6} runs {r.pruned:>5} stopped at the bound "
                  f"{len(r.failing_schedules):>4} failing {len(r.final_states):>5} final states {r.seconds:>8.2f} s")
        print(f"  all: {record_s:.2f} s", flush=True)
    cluster = None
    if args.no_cluster:
        notes["cluster_overhead_s"] = "left out (--no-cluster)"
    elif importlib.util.find_spec("ray") is None:
        notes["cluster_overhead_s"] = "Ray is not installed: pip install -e '.[cluster]'"
    else:
        target = "legacy" if "legacy" in variants else variants[0]
        cluster = cluster_overhead(target, args.limit)
        notes["cluster_overhead_s"] = ("wall time of the verdict on one variant on a local Ray cluster, from before "
                                       "ray.init() to after its shutdown, minus the same in one process")
        print(f"\n{target} on a local Ray cluster ({cluster['workers']} actors): {cluster['total_s']:.2f} s "
              f"(start {cluster['start_s']:.2f}, exploring {cluster['explore_s']:.2f}, shutdown "
              f"{cluster['shutdown_s']:.2f}) against {cluster['one_process_s']:.2f} s in one process and "
              f"{cluster['jobs2_s']:.2f} s with --jobs 2 (sleep sets, which split); overhead "
              f"{cluster['overhead_s']:+.2f} s; "
              f"same runs {'yes' if cluster['identical'] else 'NO'}", flush=True)

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
    for key, note in notes.items():
        print(f"{key}: {note}")
    reduced = per_variant.get("legacy") or next(iter(per_variant.values()))
    if args.json:
        print(json.dumps({
            "verdict_s": round(verdict, 2), "verdict_s_old": round(verdict_old, 2),
            "verdict_ratio": round(verdict_old / verdict, 2), "verdict_cpu_s": round(cpu, 2),
            "verdict_cpu_s_old": round(cpu_old, 2), "runs_per_s": round(runs / verdict, 1),
            "schedules_per_s_covered": round(schedules / verdict, 1), "variants": per_variant,
            "verdict_jobs2_s": round(jobs2_s, 2), "verdict_jobs2_split_s": round(split_s, 2),
            "verdict_jobs2_identical": jobs2_same,
            "record_k2_verdict_s": record_s and round(record_s, 2), "record_k2": record, "cluster_overhead_s": cluster and cluster["overhead_s"],
            "cluster": cluster, "notes": notes,
            "schedules_per_s": round(plain.runs / plain.seconds, 1),
            "schedules_per_s_jobs": round(parallel.runs / parallel.seconds, 1),
            "schedules_per_s_reduced": round(reduced["runs"] / reduced["seconds"], 1),
            "jobs": jobs, "restore_us": round(restore, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
