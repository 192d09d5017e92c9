#!/usr/bin/env python3
"""Take KernelShark's own picture of the race, for the README.

    python scripts/kernelshark_race.py [--variant legacy] [--out scripts/kernelshark/race-legacy.png]

The race scenario runs on the variant; its trace goes to a trace.dat with the run's timeline
as print events "ftrace-emu: ..." of their CPU (`ftrace-emu race --trace-dat DIR
--timeline-events`): on the kernels with the race the function tracer dies before any call
site calls it, as on a real kernel, so the timeline is what shows both CPUs and the moment
ftrace_bug() kills ftrace.  Debian's KernelShark opens the file under Xvfb, with a scratch
HOME and cache (its "running as root" warning answered there, never in your own config),
and `xwd` takes the screen once the window has settled; the shot is written as PNG.

Needs: kernelshark, xvfb-run (xvfb) and xwd (x11-apps): apt-get install kernelshark xvfb x11-apps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 1400, 900
SETTLE_S, TIMEOUT_S = 1.0, 60.0


def xwd_to_png(data: bytes) -> bytes:
    """An XWD dump of a 24/32-bit TrueColor screen (what Xvfb gives) as an RGB PNG."""
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line, ncolors = fields[7], fields[11], fields[12], fields[19]
    if bits_per_pixel != 32:
        raise SystemExit(f"kernelshark_race: xwd gave {bits_per_pixel} bits a pixel; expected 32 (Xvfb -screen ...x24)")
    order = "little" if byte_order == 0 else "big"
    start = header_size + ncolors * 12
    rows = []
    for y in range(height):
        line = data[start + y * bytes_per_line:start + y * bytes_per_line + width * 4]
        pixels = bytearray(width * 3)
        for x in range(width):
            value = int.from_bytes(line[4 * x:4 * x + 4], order)
            pixels[3 * x:3 * x + 3] = bytes(((value >> 16) & 255, (value >> 8) & 255, value & 255))
        rows.append(b"\0" + bytes(pixels))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def write_race_tracedat(variant: str, path: Path) -> None:
    from ftrace_core.scenario import boot_for, load_scenario, run_scenario

    scenario = load_scenario("race")
    system = boot_for(scenario, variant, "breakpoints")
    result = run_scenario(scenario, variant, system=system)
    system.write_tracedat(path, timeline=result.timeline)


_SHOOT = """
kernelshark -geometry {w}x{h}+0+0 "$1" >"$2" 2>&1 &
last=""
deadline=$(( $(date +%s) + {timeout} ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    sleep {settle}
    xwd -root -silent > "$3.new"
    if [ -n "$last" ] && cmp -s "$3.new" "$3"; then exit 0; fi
    mv "$3.new" "$3"; last=1
done
exit 1
"""


def shoot(tracedat: Path, out_png: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="kernelshark-race-") as scratch:
        home = Path(scratch)
        (home / "setting.ini").write_text("[General]\nnoRootWarn=true\n")  # KsMainWindow::_rootWarning()
        env = dict(os.environ, HOME=str(home), KS_USER_CACHE_DIR=str(home), XDG_CACHE_HOME=str(home),
                   XDG_CONFIG_HOME=str(home))
        xwd, log = home / "screen.xwd", home / "kernelshark.log"
        script = _SHOOT.format(w=WIDTH, h=HEIGHT, timeout=int(TIMEOUT_S), settle=SETTLE_S)
        done = subprocess.run(["xvfb-run", "-a", "-s", f"-screen 0 {WIDTH}x{HEIGHT}x24", "sh", "-c", script, "shoot",
                               str(tracedat), str(log), str(xwd)], env=env, timeout=TIMEOUT_S + 30)
        if done.returncode or not xwd.exists():
            tail = log.read_text()[-500:] if log.exists() else ""
            raise SystemExit(f"kernelshark_race: KernelShark's window did not settle in {TIMEOUT_S:.0f} s\n{tail}")
        out_png.parent.mkdir(parents=True, exist_ok=True)
        out_png.write_bytes(xwd_to_png(xwd.read_bytes()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="legacy", help="the kernel the race runs on (default: legacy)")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "kernelshark" / "race-legacy.png")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("kernelshark", "xvfb-run", "xwd") if shutil.which(tool) is None]
    if missing:
        print(f"kernelshark_race: needs {', '.join(missing)}: apt-get install kernelshark xvfb x11-apps",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kernelshark-race-dat-") as tmp:
        tracedat = Path(tmp) / f"race-{args.variant}.dat"
        write_race_tracedat(args.variant, tracedat)
        started = time.monotonic()
        shoot(tracedat, args.out)
    print(f"wrote {args.out} (KernelShark, {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
