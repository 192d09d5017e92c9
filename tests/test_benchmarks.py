"""The benchmark scripts run and end with their JSON line (their figures are not asserted:
speed is measured by running them, BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _last_json(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPTS / script), *args, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bench_trace_reports_both_workloads():
    figures = _last_json("bench_trace.py", "--scale", "0.001", "--repeats", "1")
    for key in ("traced_calls_per_s", "slowdown_all", "slowdown_one", "traced_calls_per_s_tiny",
                "slowdown_all_tiny", "slowdown_one_tiny", "hook_traced_calls_per_s"):
        assert figures[key] > 0, key


def test_bench_boot_reports_the_largest_size():
    figures = _last_json("bench_boot.py", "--sizes", "50,200")
    assert figures["sites"] > 200
    for key in ("boot_us_per_site", "enable_us_per_site", "disable_us_per_site"):
        assert figures[key] > 0, key


def test_bench_explore_reports_its_rates():
    figures = _last_json("bench_explore.py", "--limit", "4", "--variants", "legacy,fixed")
    for key in ("verdict_s", "verdict_s_old", "verdict_ratio", "runs_per_s", "schedules_per_s_covered",
                "schedules_per_s", "schedules_per_s_reduced", "schedules_per_s_jobs", "restore_us",
                "verdict_jobs2_s", "verdict_jobs2_split_s"):
        assert figures[key] > 0, key
    assert list(figures["variants"]) == ["legacy", "fixed"]
    assert all(v["identical"] for v in figures["variants"].values())  # both runners, the same runs
    assert figures["verdict_jobs2_identical"]  # split in two, the same runs
    assert figures["record_k2_verdict_s"] > 0 and list(figures["record_k2"]) == ["legacy", "fixed"]
    assert all(r["runs"] >= 1 for r in figures["record_k2"].values())
    # The cluster's overhead needs Ray, which CI installs; elsewhere it may be null, with a note.
    assert figures["notes"]["cluster_overhead_s"]
    if importlib.util.find_spec("ray") is not None or os.environ.get("CI") == "true":
        assert isinstance(figures["cluster_overhead_s"], float)
        cluster = figures["cluster"]
        assert cluster["identical"] and cluster["workers"] >= 1 and cluster["total_s"] > cluster["explore_s"] > 0
    else:
        assert figures["cluster_overhead_s"] is None and figures["cluster"] is None


@pytest.mark.skipif(sys.platform != "linux", reason="builds and runs a native binary")
def test_bench_native_runs_or_says_why_not():
    figures = _last_json("bench_native.py", "--calls", "20000")
    assert figures.get("skipped") == "uftrace not installed" or figures["ratio_emu_to_uftrace"] > 0


def test_bench_encode_reports_both_encodings():
    figures = _last_json("bench_encode.py", "--calls", "2", "--repeats", "1")
    for key in ("events", "text_events_per_s", "pages_events_per_s", "dat_events_per_s", "pages_to_text"):
        assert figures[key] > 0, key
