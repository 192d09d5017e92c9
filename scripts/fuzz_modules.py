#!/usr/bin/env python3
"""Fuzz the module loader with seeded mutations of the shipped modules.

    python scripts/fuzz_modules.py [--cases 10000] [--seed 1] [--json]

Each case mutates a shipped .ko (bit flips, truncation, corrupted section, symbol and
relocation tables, huge sizes and counts, overlapping sections, relocations pointing outside
their section), loads it (half of the time with the function tracer on) and checks that the
load either succeeds (the module is then unloaded) or fails with the loader's own error in
one line; and that afterwards the module list, the memory map, ftrace's records, the ops and
kallsyms are exactly as before.  Prints the outcome counts; exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import guest  # noqa: E402
from emu.fuzz import mutate  # noqa: E402
from ftrace_core.system import boot  # noqa: E402
from ftrace_core.testing import try_load  # noqa: E402

SOURCES = ["race_mod", "hello", "joined", "fail_init", "lkdtm"]


def one_case(system, data: bytes, name: str) -> str:
    """The outcome's kind: "loaded", or the error class and its message's shape."""
    outcome = try_load(system, data, name)
    return re.sub(r"0x[0-9a-f]+|\b\d+\b|'[^']*'", "N", outcome.split(": ", 2)[-1]) if outcome != "loaded" else outcome


def run(cases: int, seed: int) -> dict:
    originals = {n: guest.module_path(n).read_bytes() for n in SOURCES}
    rng = random.Random(seed)
    outcomes: collections.Counter = collections.Counter()
    violations = []
    system = None
    start = time.perf_counter()
    for i in range(cases):
        if i % 200 == 0:  # a fresh kernel now and then: guest heap and log are not reset by unloads
            system = boot("fixed")
            if (i // 200) % 2:
                system.tracefs.write("current_tracer", "function")
        src = rng.choice(SOURCES)
        data, what = mutate(originals[src], rng)
        try:
            outcomes[one_case(system, data, f"{src}-{i}.ko")] += 1
        except AssertionError as exc:
            violations.append({"case": i, "source": src, "mutation": what, "violation": str(exc)})
            system = boot("fixed")
    return {"cases": cases, "seed": seed, "seconds": round(time.perf_counter() - start, 1),
            "loaded": outcomes["loaded"], "refused": cases - outcomes["loaded"] - len(violations),
            "violations": violations, "outcomes": dict(outcomes.most_common())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.cases, args.seed)
    print(f"{report['cases']} cases (seed {report['seed']}) in {report['seconds']} s: "
          f"{report['loaded']} loaded and unloaded cleanly, {report['refused']} refused, "
          f"{len(report['violations'])} violations")
    for kind, count in list(report["outcomes"].items())[:25]:
        print(f"  {count:6d}  {kind}")
    for v in report["violations"][:20]:
        print(f"VIOLATION case {v['case']} ({v['source']}: {v['mutation']}): {v['violation']}")
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "outcomes"}))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
