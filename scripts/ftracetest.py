#!/usr/bin/env python3
"""Run the kernel's own ftrace selftests (tools/testing/selftests/ftrace) on the emulated kernel.

    python scripts/ftracetest.py [--variant V ...] [--check] [--source TARBALL]

The selftests come from Debian's linux-source-6.1 package (/usr/src/linux-source-6.1.tar.xz),
extracted at run time into a temporary folder; nothing of them is committed here.  For each
variant a fresh system is mounted (ftrace-emu mount) and `ftracetest test.d/00basic
test.d/ftrace` runs against it in a private mount namespace where:

  - any real tracefs or debugfs is unmounted, and ftracetest's own search of /proc/mounts must
    find the emulated tracefs, or nothing runs;
  - /proc/sys/kernel is a private tmpfs holding a scratch copy of sched_rt_runtime_us
    (ftracetest writes it) and the emulated kernel's own sysctls (kernel/ftrace_enabled,
    kernel/stack_tracer_enabled, ...) as a procsys mount beside the tracefs serves them (ftrace_core.tracefs.procsys: a second FUSE mount, talking to the system
    through the tracefs mount's control socket);
  - HOME is a scratch folder (ftracetest falls back to it when instances/ is missing).

Each case's verdict is compared with scripts/ftracetest_expected.tsv, where every case that
does not PASS carries its reason.  --check exits 1 when a verdict differs from the table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ftrace_core.kernels import VARIANTS  # noqa: E402

TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
MEMBER = "linux-source-6.1/tools/testing/selftests/ftrace/"
EXPECTED = Path(__file__).resolve().parent / "ftracetest_expected.tsv"
CASE_DIRS = ("test.d/00basic", "test.d/ftrace")
SETUP_FAILED = 97
_RESULT = re.compile(r"^\[\d+\]\s*(\(instance\)\s*)?(.*?)\s*\[([A-Z]+)\]\s*$")

_WRAPPER = r"""
set -e
# every tracefs but ours (the host's, and other emulated ones mounted meanwhile), and debugfs
for m in $(awk '($3 == "tracefs" || $3 == "debugfs" || $3 == "fuse.tracefs") && $2 != ENVIRON["FTRACE_EMU_MOUNT"] {print $2}' /proc/mounts | sort -r); do
    umount -l "$m"
done
found=$(grep tracefs /proc/mounts | cut -f2 -d' ' | head -1)
[ "$found" = "$FTRACE_EMU_MOUNT" ] || { echo "ftracetest would use '$found', not the emulated tracefs" >&2; exit 97; }
# /proc/sys/kernel becomes a private tmpfs: writes never reach the host's, and the emulated
# kernel's sysctls (its procsys mount) can be put there even where the host has no such entry.
mount -t tmpfs -o mode=0755 ftrace-emu-sysctl /proc/sys/kernel || exit 97
for f in sched_rt_runtime_us; do
    cp "$FTRACE_EMU_SCRATCH/$f" /proc/sys/kernel/$f || exit 97
done
for f in $(ls "$FTRACE_EMU_PROCSYS/kernel"); do
    : > /proc/sys/kernel/$f
    mount --bind "$FTRACE_EMU_PROCSYS/kernel/$f" /proc/sys/kernel/$f || exit 97
done
export HOME="$FTRACE_EMU_SCRATCH/home"
cd "$FTRACE_EMU_SELFTESTS"
exec ./ftracetest -l "$FTRACE_EMU_SCRATCH/logs" "$@"
"""


def extract(source: Path, into: Path) -> Path:
    """tools/testing/selftests/ftrace from the linux-source tarball."""
    if not source.is_file():
        raise SystemExit(f"ftracetest: {source}: not found (apt-get install linux-source-6.1)")
    with tarfile.open(source) as tar:
        members = [m for m in tar if m.name.startswith(MEMBER)]
        tar.extractall(into, members=members, filter="tar")
    return into / MEMBER


def serve_procsys(where: Path, tracefs_mount: Path) -> subprocess.Popen:
    """The system's sysctls on a FUSE mount of their own at where (procsys.py); returns its
    server once the mount is up."""
    server = subprocess.Popen([sys.executable, "-m", "ftrace_core.tracefs.procsys", str(where),
                               "--tracefs", str(tracefs_mount)], cwd=ROOT, stdout=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.ismount(where):
            return server
        if server.poll() is not None:
            raise SystemExit(f"ftracetest: the procsys mount failed (exit {server.returncode})")
        time.sleep(0.05)
    server.kill()
    raise SystemExit("ftracetest: the procsys mount did not come up")


def run_variant(selftests: Path, variant: str) -> dict[str, str]:
    """Every case's verdict on a fresh mount of the variant: {description: PASS/FAIL/...};
    cases run again in an instance are keyed "(instance) description"."""
    cli = [sys.executable, "-m", "ftrace_core.cli"]
    with tempfile.TemporaryDirectory(prefix="ftrace-emu-ftracetest-") as tmp:
        scratch, mount, procsys = Path(tmp) / "scratch", Path(tmp) / "tracing", Path(tmp) / "sys"
        for d in (scratch / "home", scratch / "logs", mount, procsys):
            d.mkdir(parents=True)
        (scratch / "sched_rt_runtime_us").write_text("950000\n")
        subprocess.run([*cli, "mount", str(mount), "--variant", variant], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        sysctl_server = None
        try:
            sysctl_server = serve_procsys(procsys, mount)
            env = dict(os.environ, FTRACE_EMU_MOUNT=str(mount), FTRACE_EMU_SCRATCH=str(scratch),
                       FTRACE_EMU_SELFTESTS=str(selftests), FTRACE_EMU_PROCSYS=str(procsys))
            done = subprocess.run(["unshare", "-m", "--propagation", "private", "--", "sh", "-c", _WRAPPER,
                                   "ftracetest", *CASE_DIRS], env=env, capture_output=True, text=True,
                                  timeout=900)
        finally:
            if sysctl_server is not None:
                subprocess.run(["umount", str(procsys)], stderr=subprocess.DEVNULL)
                try:
                    sysctl_server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    sysctl_server.kill()
            subprocess.run([*cli, "umount", str(mount)], cwd=ROOT)
    if done.returncode == SETUP_FAILED:
        raise SystemExit(f"ftracetest: not run: {done.stderr.strip()}")
    verdicts = {}
    for line in done.stdout.splitlines():
        m = _RESULT.match(line)
        if m:
            verdicts[("(instance) " if m.group(1) else "") + m.group(2)] = m.group(3)
    if not verdicts:
        raise SystemExit(f"ftracetest printed no verdicts:\n{done.stdout}\n{done.stderr}")
    return verdicts


def read_expected() -> tuple[list[str], dict[str, tuple[list[str], str]]]:
    """The committed table: variants (its header) and, per case, a verdict each and the reason."""
    lines = [line for line in EXPECTED.read_text().splitlines() if line.strip() and not line.startswith("#")]
    header = lines[0].split("\t")
    variants = header[1:-1]
    table = {}
    for line in lines[1:]:
        cells = line.split("\t")
        table[cells[0]] = (cells[1:1 + len(variants)], cells[-1])
    return variants, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="(repeatable; default: all)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a verdict differs from the table")
    parser.add_argument("--source", type=Path, default=TARBALL, help="the linux-source tarball")
    args = parser.parse_args(argv)
    variants = args.variant or list(VARIANTS)
    if shutil.which("unshare") is None:
        raise SystemExit("ftracetest: unshare is needed (util-linux)")
    with tempfile.TemporaryDirectory(prefix="ftrace-emu-selftests-") as tmp:
        selftests = extract(args.source, Path(tmp))
        results = {v: run_variant(selftests, v) for v in variants}
    expected_variants, table = read_expected()
    cases = list(dict.fromkeys(c for v in variants for c in results[v]))
    differ = []
    counts: dict[str, dict[str, int]] = {v: {} for v in variants}
    print("case\t" + "\t".join(variants))
    for case in cases:
        got = [results[v].get(case, "-") for v in variants]
        for v, verdict in zip(variants, got):
            counts[v][verdict] = counts[v].get(verdict, 0) + 1
        want = table.get(case)
        mark = ""
        if want is None:
            mark = "  <- not in the table"
            differ.append(case)
        else:
            wanted = dict(zip(expected_variants, want[0]))
            if any(wanted.get(v) != g for v, g in zip(variants, got)):
                mark = f"  <- expected {' '.join(wanted.get(v, '?') for v in variants)}"
                differ.append(case)
        print(f"{case}\t" + "\t".join(got) + mark)
    for v in variants:
        print(f"{v}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts[v].items())))
    if differ:
        print(f"{len(differ)} case(s) differ from {EXPECTED.name}", file=sys.stderr)
    return 1 if (args.check and differ) else 0


if __name__ == "__main__":
    sys.exit(main())
