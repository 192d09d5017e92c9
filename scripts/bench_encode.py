#!/usr/bin/env python3
"""Benchmark encoding a trace: the kernel's binary ring-buffer pages (trace_pipe_raw's,
trace.dat's CPU data) against the text formatter (`cat trace`), in ratios from one run.

    python scripts/bench_encode.py [--calls N] [--repeats R] [--json]

The function tracer records workload_run(N) on every function (the in-guest recorder, a
buffer large enough to keep every event); then, best of R runs each:

  text    the event lines of `cat trace` (ftrace_core.output.format_entries);
  pages   every event as its ring-buffer bytes on pages (EntryEncoder + encode_pages);
  dat     System.write_tracedat(): the pages plus kallsyms, formats, cmdlines, to a file;
  dat7    the same as trace.dat version 7 compressed with zlib (and with zstd where this
          machine can make it): the sizes against version 6's;
  decode  the pages read back (decode_pages), as a check that they hold every event.

With --json the last line holds events, text_events_per_s, pages_events_per_s,
dat_events_per_s and pages_to_text (how many times faster the binary encoding is), and the
files' sizes: dat_bytes (version 6), dat7_zlib_bytes, dat7_zstd_bytes (when made).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftrace_core.output import format_entries  # noqa: E402
from ftrace_core.errors import FtraceError  # noqa: E402
from ftrace_core.ringbuffer import EntryEncoder, decode_pages, encode_pages  # noqa: E402
from ftrace_core.ringbuffer.tracedat7 import codec  # noqa: E402
from ftrace_core.system import boot  # noqa: E402


def best(repeats: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="workload_run's iterations")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    system = boot(recorder="guest")
    system.tracefs.write("buffer_size_kb", "65536")
    system.tracefs.write("current_tracer", "function")
    system.call("workload_run", args.calls, budget=None)
    system.tracefs.write("tracing_on", "0")
    buffer = system.buffer
    nr_cpus = len(system.cpus)
    entries = buffer.entries()
    per_cpu = [buffer.entries(cpu) for cpu in range(nr_cpus)]
    events = len(entries)
    fmt = system.tracefs.top.options.format()
    encoder = EntryEncoder.for_kernel(system.tree)

    def text() -> int:
        return len(format_entries(entries, system.env, [0] * nr_cpus, fmt))

    def pages() -> list[bytes]:
        encode = encoder.encode
        return [page for held in per_cpu for page in encode_pages((e.ts, encode(e)) for e in held)[0]]

    with tempfile.TemporaryDirectory() as where:
        t_text, _ = best(args.repeats, text)
        t_pages, encoded = best(args.repeats, pages)
        t_dat, size = best(args.repeats, lambda: system.write_tracedat(Path(where) / "trace.dat"))
        t_decode, decoded = best(args.repeats, lambda: sum(len(p.events) for p in decode_pages(b"".join(encoded))))
        compressed = {}  # version 7: compression -> (seconds, bytes)
        for compression in ("zlib", "zstd"):
            try:
                codec(compression)
            except FtraceError:
                continue  # zstd: no module or program here
            compressed[compression] = best(args.repeats, lambda: system.write_tracedat(
                Path(where) / "trace7.dat", version=7, compression=compression))
    if decoded != events:
        print(f"decoded {decoded} events of {events}", file=sys.stderr)
        return 1
    figures = {
        "events": events,
        "text_events_per_s": round(events / t_text),
        "pages_events_per_s": round(events / t_pages),
        "dat_events_per_s": round(events / t_dat),
        "decode_events_per_s": round(events / t_decode),
        "pages_to_text": round(t_text / t_pages, 2),
        "pages": len(encoded),
        "dat_bytes": size,
    }
    for compression, (t, written) in compressed.items():
        figures[f"dat7_{compression}_events_per_s"] = round(events / t)
        figures[f"dat7_{compression}_bytes"] = written
    print(f"{events:,} function events, {len(encoded):,} pages ({size:,} bytes as trace.dat)")
    for name, t in (("text (cat trace)", t_text), ("pages (trace_pipe_raw)", t_pages),
                    ("trace.dat (write_tracedat)", t_dat), ("decode pages", t_decode)):
        print(f"  {name:28s} {t:7.3f} s  {events / t:12,.0f} events/s  {t_text / t:5.2f}x text")
    for compression, (t, written) in compressed.items():
        print(f"  {'trace.dat v7, ' + compression:28s} {t:7.3f} s  {events / t:12,.0f} events/s  "
              f"{t_text / t:5.2f}x text  ({written:,} bytes: {written / size:.1%} of version 6's)")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
