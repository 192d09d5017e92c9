#!/usr/bin/env python3
"""Regenerate the README's command examples from real output, or check that they have not drifted.

    python scripts/readme_examples.py            # rerun every example, rewrite its block in README.md
    python scripts/readme_examples.py --check    # rewrite nothing; exit 1 with a diff per drifted block
    python scripts/readme_examples.py --list     # the examples found, with their README line numbers
    python scripts/readme_examples.py -k disasm  # only the examples whose marker contains "disasm"

After editing README prose, or a change that alters output, run it without --check and review
`git diff README.md`; tests/test_readme.py runs --check, so CI fails when a block drifts.

An example is an HTML comment (invisible on GitHub) just before a fenced code block; the block's
contents belong to the script and are replaced by the output on each run.  Forms:

    <!-- example: ftrace-emu race --variant seed --timeline -->
        The block is the command's output.

    <!-- example: ftrace-emu race --variant seed --timeline
         from='^CPU 0 ' until='^set_all_modules_text_ro'
         from='ftrace: DISABLED' to='invariants:' -->
        The same, abridged: lines after the command are rules applied to its output (below).

    <!-- example:
    $ ftrace-emu build-module mymod.c -o mymod.ko
    $ ftrace-emu trace -m mymod.ko --filter '*:mod:mymod' --run 'my_entry 20' \\
          --filter printk
        tail=3 ...
    -->
        A "$ " line is shown in the block as written (continued by lines after a trailing
        backslash), followed by its output; indented rule lines after a command apply to it.
        Commands run in order, in one directory, so this is the shell form for sequences.
        `setup: COMMAND` runs a command without showing it or its output; `finally: COMMAND`
        runs after the others whatever happened (to unmount what an example mounted).
        `needs: fuse trace-cmd` names what the example needs beyond the project: where one is
        missing the example is left as it is and said to be skipped (under CI=true, an error).

    <!-- example: ftrace-emu shell
    ftrace-emu# insmod race_mod
    ftrace-emu# call race_mod_work 2
    -->
        `ftrace-emu# ` lines are fed to the command on stdin; the block is a transcript, each
        line after the prompt followed by its own output.  (The shell is run once, piped; its
        `echo TEXT` separates the lines' outputs.)

    <!-- example-file: mymod.c -->
        Not an example: the next block (e.g. C source the README shows) is written to this file
        in every example's directory before it runs.  Never rewritten.

Rules, applied in the order written (REGEX is Python's `re.search` on one line; quote with '...'):

    lines=2-7,12,30-       keep these lines (1-based, of the output as it is at this rule)
    from=REGEX             keep from the first matching line ...
      to=REGEX             ... through the next line matching (the `from` line included), or
      until=REGEX          ... up to, not including, the next matching line after it
                           (several from/to pairs in a row keep several ranges, each searched
                           after the previous one; a from with neither runs to the end)
    grep=REGEX             keep the matching lines;  omit=REGEX  drop them
    head=N  tail=N         the first / last N lines
    sub=/REGEX/REPL/       re.sub on each line (any delimiter), e.g. for a temp path or a time
    ...                    show a "..." line wherever lines were left out
    status=N               the command's expected exit status (default 0; otherwise an error)

A rule that matches nothing is an error, so an abridgement cannot silently go stale.

How commands run: each example in a fresh temporary directory, by /bin/sh, with stdout and
stderr merged; `ftrace-emu` is this interpreter (sys.executable) running this checkout's
ftrace_core.cli.  The environment is fixed so output is stable: COLUMNS=100 (rich's width),
NO_COLOR=1, PYTHONUNBUFFERED=1 (stdout and stderr interleave as on a terminal), PYTHONHASHSEED=0,
LC_ALL=C.UTF-8, TZ=UTC.  Trailing spaces and trailing blank lines are stripped.  Output that
contains the temporary directory's path is an error: filter it with sub=.  Exit status: 0 when
all is well, 1 when --check finds drift, 2 when an example cannot run (a bad marker, a command
failing, a rule matching nothing).
"""

from __future__ import annotations

import argparse
import importlib.util
import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PROMPT = "ftrace-emu# "
SEPARATOR = "@@readme-examples-separator@@"  # printed by the shell's `echo` between input lines
TIMEOUT = 300  # seconds per command
ENV = {
    "COLUMNS": "100",
    "LINES": "50",
    "NO_COLOR": "1",
    "PYTHONUNBUFFERED": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONIOENCODING": "utf-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
}
UNSET = ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS", "COLORTERM", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
         "JUPYTER_COLUMNS", "JUPYTER_LINES", "PYTHONSTARTUP", "PYTHONWARNINGS")
# `ftrace-emu` as its console-script entry point runs it, with this interpreter and this checkout.
WRAPPER = """#!/bin/sh
exec {python} -c 'import sys; sys.argv[0] = "ftrace-emu"; from ftrace_core.cli import main; sys.exit(main())' "$@"
"""
NEEDS = ("fuse", "trace-cmd")  # what `needs:` may name
RULE_KEYS = ("lines", "from", "to", "until", "grep", "omit", "head", "tail", "sub", "status")
MARKER = re.compile(r"^<!--\s*example(-file)?\s*:(.*)$")


class ExampleError(Exception):
    """A marker that cannot be parsed or an example that cannot run: exit status 2."""


@dataclass
class Step:
    kind: str                      # "quiet" (output only), "shown" ("$ cmd" then output), "setup", "finally"
    display: list[str]             # the command as written (for "shown", its "$ " line and continuations)
    rules: list[str] = field(default_factory=list)
    stdin: list[str] = field(default_factory=list)

    @property
    def command(self) -> str:
        text = "\n".join(self.display)
        return text[2:] if self.kind == "shown" else text


@dataclass
class Example:
    line: int                      # 1-based line of the marker in the README
    steps: list[Step]
    start: int                     # index of the first content line of the block
    end: int                       # index of the closing fence
    current: list[str]             # the block's lines as they are in the README
    path: str = "README.md"
    needs: tuple[str, ...] = ()    # what the example needs beyond the project (NEEDS)

    @property
    def name(self) -> str:
        first = next((s for s in self.steps if s.kind != "setup"), self.steps[0])
        cmd = " ".join(first.command.split())
        return f"{self.path}:{self.line} example: {cmd[:70]}{'...' if len(cmd) > 70 else ''}"


# -- parsing the README -------------------------------------------------------------------------

def _fenced_block(lines: list[str], i: int, where: str) -> tuple[int, int]:
    """The block whose opening fence is at or after line index i (blank lines allowed before it):
    (index of its first content line, index of its closing fence)."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    m = re.match(r"^(`{3,}|~{3,})", lines[i]) if i < len(lines) else None
    if not m:
        raise ExampleError(f"{where}: the marker is not followed by a fenced code block")
    fence = m.group(1)
    for j in range(i + 1, len(lines)):
        if lines[j].startswith(fence) and not lines[j][len(fence):].strip(fence[0] + " \t"):
            return i + 1, j
    raise ExampleError(f"{where}: the code block after the marker is not closed")


def _parse_body(header: str, body: list[str], where: str, needs: list[str] | None = None) -> list[Step]:
    steps: list[Step] = []
    continuing = False
    if header.strip():
        steps.append(Step("quiet", [header.strip()]))
        continuing = header.rstrip().endswith("\\")
    for raw in body:
        text = raw.rstrip()
        stripped = text.strip()
        if continuing:
            steps[-1].display.append(text)
            continuing = text.endswith("\\")
            continue
        if not stripped:
            continue
        if stripped.startswith("$ "):
            steps.append(Step("shown", [stripped]))
        elif stripped.startswith("setup:"):
            steps.append(Step("setup", [stripped[len("setup:"):].strip()]))
        elif stripped.startswith("finally:"):
            steps.append(Step("finally", [stripped[len("finally:"):].strip()]))
        elif stripped.startswith("needs:"):
            wanted = stripped[len("needs:"):].split()
            unknown = [w for w in wanted if w not in NEEDS]
            if unknown or needs is None:
                raise ExampleError(f"{where}: needs: {' '.join(unknown)}: expected some of {', '.join(NEEDS)}")
            needs.extend(wanted)
            continue
        elif stripped.startswith(PROMPT.strip()):
            if not steps:
                raise ExampleError(f"{where}: shell input {stripped!r} before any command")
            steps[-1].stdin.append(stripped[len(PROMPT.strip()):].strip())
            continue
        else:
            if not steps:
                raise ExampleError(f"{where}: rules {stripped!r} before any command")
            try:
                tokens = shlex.split(stripped)
            except ValueError as exc:
                raise ExampleError(f"{where}: rules {stripped!r}: {exc}") from None
            for token in tokens:
                key = token.split("=", 1)[0]
                if token != "..." and ("=" not in token or key not in RULE_KEYS):
                    raise ExampleError(f"{where}: unknown rule {token!r} (expected ..., or KEY=VALUE "
                                       f"with KEY one of {', '.join(RULE_KEYS)})")
            steps[-1].rules.extend(tokens)
            continue
        continuing = text.endswith("\\")
    if not any(s.kind != "setup" for s in steps):
        raise ExampleError(f"{where}: the marker names no command to show")
    return steps


def parse_readme(text: str, path: str = "README.md") -> tuple[list[str], list[Example], dict[str, str]]:
    """The README's lines, its examples, and its example files (name -> contents)."""
    lines = text.split("\n")
    examples: list[Example] = []
    files: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if not m:
            if lines[i].lstrip().startswith("<!-- example"):
                raise ExampleError(f"{path}:{i + 1}: not a marker: expected '<!-- example: ...' "
                                   f"or '<!-- example-file: NAME -->'")
            i += 1
            continue
        where = f"{path}:{i + 1}"
        first, rest = m.group(2), []
        j = i
        while "-->" not in (first if j == i else lines[j]):
            j += 1
            if j >= len(lines):
                raise ExampleError(f"{where}: the marker's comment is not closed with -->")
            rest.append(lines[j])
        if j == i:
            first = first[:first.index("-->")]
        else:
            rest[-1] = rest[-1][:rest[-1].index("-->")]
        start, end = _fenced_block(lines, j + 1, where)
        if m.group(1):  # example-file
            name = first.strip()
            if not name or rest and any(r.strip() for r in rest) or "/" in name:
                raise ExampleError(f"{where}: expected '<!-- example-file: NAME -->'")
            files[name] = "\n".join(lines[start:end]) + "\n"
        else:
            needs: list[str] = []
            steps = _parse_body(first, rest, where, needs)
            examples.append(Example(i + 1, steps, start, end, lines[start:end], path, tuple(needs)))
        i = end + 1
    return lines, examples, files


# -- rules --------------------------------------------------------------------------------------

def _search(regex: str, where: str):
    try:
        return re.compile(regex).search
    except re.error as exc:
        raise ExampleError(f"{where}: bad regular expression {regex!r}: {exc}") from None


def _int(value: str, key: str, where: str) -> int:
    if not value.isdigit():
        raise ExampleError(f"{where}: {key}={value!r}: expected a number")
    return int(value)


def apply_rules(text: str, rules: list[str], where: str = "rules") -> list[str]:
    """The lines of `text` the rules keep (see the module docstring), with "..." for gaps if asked."""
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    kept = [(n, line.rstrip()) for n, line in enumerate(lines)]
    total = len(kept)
    mark_gaps = False
    i = 0
    while i < len(rules):
        token = rules[i]
        if token == "...":
            mark_gaps = True
            i += 1
            continue
        key, value = token.split("=", 1)
        if key == "status":
            i += 1
            continue
        if key in ("from", "to", "until"):
            # A run of from/to/until pairs: the union of their ranges, each after the previous.
            selected, pos = [], 0
            while i < len(rules) and rules[i].split("=", 1)[0] in ("from", "to", "until"):
                key, value = rules[i].split("=", 1)
                start = pos
                if key == "from":
                    match = _search(value, where)
                    start = next((k for k in range(pos, len(kept)) if match(kept[k][1])), None)
                    if start is None:
                        raise ExampleError(f"{where}: from={value!r} matches no line")
                    i += 1
                    key, _, value = rules[i].partition("=") if i < len(rules) else ("", "", "")
                stop = len(kept)
                if key in ("to", "until"):
                    match = _search(value, where)
                    first = start if key == "to" else start + 1
                    found = next((k for k in range(first, len(kept)) if match(kept[k][1])), None)
                    if found is None:
                        raise ExampleError(f"{where}: {key}={value!r} matches no line after the range's start")
                    stop = found + 1 if key == "to" else found
                    i += 1
                selected.extend(kept[start:stop])
                pos = stop
            kept = selected
            continue
        if key == "lines":
            selected = []
            for part in value.split(","):
                m = re.fullmatch(r"(\d+)(?:-(\d*))?", part.strip())
                if not m:
                    raise ExampleError(f"{where}: lines={value!r}: expected e.g. 2-7,12,30-")
                a = int(m.group(1))
                b = a if m.group(2) is None else int(m.group(2)) if m.group(2) else len(kept)
                if not 1 <= a <= b <= len(kept):
                    raise ExampleError(f"{where}: lines={value!r}: the output has {len(kept)} lines here")
                selected.extend(kept[a - 1:b])
            kept = selected
        elif key in ("grep", "omit"):
            match = _search(value, where)
            kept = [(n, l) for n, l in kept if bool(match(l)) == (key == "grep")]
            if not kept and key == "grep":
                raise ExampleError(f"{where}: grep={value!r} matches no line")
        elif key == "head":
            kept = kept[:_int(value, key, where)]
        elif key == "tail":
            count = _int(value, key, where)
            kept = kept[len(kept) - count:] if count else []
        elif key == "sub":
            parts = value[1:].split(value[:1]) if len(value) > 2 else []
            if len(parts) != 3 or parts[2]:
                raise ExampleError(f"{where}: sub={value!r}: expected /REGEX/REPLACEMENT/")
            try:
                pattern = re.compile(parts[0])
            except re.error as exc:
                raise ExampleError(f"{where}: bad regular expression {parts[0]!r}: {exc}") from None
            kept = [(n, pattern.sub(parts[1], l).rstrip()) for n, l in kept]
        i += 1
    if not mark_gaps:
        return [l for _, l in kept]
    out, previous = [], -1
    for n, line in kept:
        if n > previous + 1:
            out.append("...")
        out.append(line)
        previous = n
    if previous < total - 1:
        out.append("...")
    return out


def _status(rules: list[str]) -> int:
    statuses = [r.split("=", 1)[1] for r in rules if r.startswith("status=")]
    return int(statuses[-1]) if statuses and statuses[-1].isdigit() else 0


# -- running ------------------------------------------------------------------------------------

def _environment(bindir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(ENV)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _run_step(step: Step, cwd: Path, env: dict[str, str], where: str) -> str:
    stdin = None
    if step.stdin:
        stdin = "".join(f"{line}\necho {SEPARATOR}\n" for line in step.stdin)
    try:
        proc = subprocess.run(["/bin/sh", "-c", step.command], cwd=cwd, env=env, input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT,
                              text=True, encoding="utf-8", errors="replace")
    except subprocess.TimeoutExpired:
        raise ExampleError(f"{where}: {step.command!r} ran over {TIMEOUT} s") from None
    expected = _status(step.rules)
    if proc.returncode != expected:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise ExampleError(f"{where}: {step.command!r} exited with status {proc.returncode}, "
                           f"expected {expected}; its output ends:\n{tail}")
    if str(cwd) in proc.stdout or str(cwd.parent) in proc.stdout:
        raise ExampleError(f"{where}: {step.command!r} prints the temporary directory's path; "
                           f"filter it with sub=/REGEX/REPL/ or do not mark this example")
    if not step.stdin:
        return proc.stdout
    # A transcript: each input line after the prompt, then what it printed.
    chunks = proc.stdout.split(SEPARATOR + "\n")
    transcript = []
    for n, line in enumerate(step.stdin):
        transcript.append(PROMPT + line + "\n")
        transcript.append(chunks[n] if n < len(chunks) else "")
    return "".join(transcript)


def _missing(need: str) -> str | None:
    """Why `need` cannot be met here, or None."""
    from ftrace_core.errors import FtraceError

    try:
        if need == "fuse":
            from ftrace_core.tracefs.mount import require_fuse
            require_fuse()
        elif need == "trace-cmd":
            from ftrace_core.tracefs.tracecmd import require_trace_cmd
            require_trace_cmd()
    except FtraceError as exc:
        return str(exc)
    return None


def run_example(example: Example, files: dict[str, str], workroot: Path, bindir: Path,
                missing: dict[str, str | None] | None = None) -> list[str]:
    """The block's new lines: each step's display and filtered output (the block as it is
    when the example needs what this machine lacks: missing, need -> why)."""
    where = example.name
    for need in example.needs:
        why = _missing(need) if missing is None else missing.get(need)
        if why is not None:
            if os.environ.get("CI") == "true":
                raise ExampleError(f"{where}: CI must run this example, but: {why}")
            print(f"readme_examples: skipped {where}: {why}", file=sys.stderr)
            return example.current
    cwd = workroot / f"line{example.line}"
    cwd.mkdir()
    for name, contents in files.items():
        (cwd / name).write_text(contents)
    env = _environment(bindir)
    block: list[str] = []
    try:
        for step in example.steps:
            if step.kind == "finally":
                continue
            output = _run_step(step, cwd, env, where)
            if step.kind == "setup":
                continue
            if step.kind == "shown":
                block.extend(step.display)
            block.extend(apply_rules(output, step.rules, where))
    finally:
        for step in example.steps:
            if step.kind == "finally":
                subprocess.run(["/bin/sh", "-c", step.command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT)
    return block


def regenerate(readme: Path, select: str | None, jobs: int) -> tuple[str, list[Example], list[list[str]]]:
    """(the README's text with every selected block regenerated, those examples, their new blocks)."""
    text = readme.read_text()
    lines, examples, files = parse_readme(text, readme.name)
    if select:
        examples = [e for e in examples if select in e.name]
    with tempfile.TemporaryDirectory(prefix="readme-examples-") as tmp:
        root = Path(tmp)
        bindir = root / "bin"
        bindir.mkdir()
        wrapper = bindir / "ftrace-emu"
        wrapper.write_text(WRAPPER.format(python=shlex.quote(sys.executable)))
        wrapper.chmod(0o755)
        workroot = root / "work"
        workroot.mkdir()
        # asked here, once: importing the project from several threads at once is not safe
        missing = {need: _missing(need) for e in examples for need in e.needs}
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            blocks = list(pool.map(lambda e: run_example(e, files, workroot, bindir, missing), examples))
    new = list(lines)
    for example, block in sorted(zip(examples, blocks), key=lambda eb: -eb[0].start):
        new[example.start:example.end] = block
    return "\n".join(new), examples, blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the top of scripts/readme_examples.py for the marker syntax.")
    parser.add_argument("--check", action="store_true",
                        help="rewrite nothing; exit 1 and print a diff for each block that differs")
    parser.add_argument("--list", action="store_true", help="list the examples and exit")
    parser.add_argument("-k", metavar="TEXT", help="only the examples whose marker line contains TEXT")
    parser.add_argument("--readme", type=Path, default=README, help="the file (default: README.md)")
    parser.add_argument("--jobs", "-j", type=int, default=min(4, os.cpu_count() or 1),
                        help="examples run at once (default: the cores, at most 4)")
    args = parser.parse_args(argv)
    if not args.list and importlib.util.find_spec("unicorn") is None:
        # Examples run ftrace-emu with this same Python: without the project's dependencies
        # every example would fail with a traceback rather than with its own output.
        print(f"readme_examples: {sys.executable} lacks the project's dependencies; run it in the environment "
              "`pip install -e '.[test]'` set up", file=sys.stderr)
        return 2
    try:
        if args.list:
            _, examples, files = parse_readme(args.readme.read_text(), args.readme.name)
            for example in examples:
                print(example.name)
            for name in files:
                print(f"(file {name})")
            return 0
        text, examples, blocks = regenerate(args.readme, args.k, args.jobs)
    except ExampleError as exc:
        print(f"readme_examples: error: {exc}", file=sys.stderr)
        return 2
    drifted = [(e, b) for e, b in zip(examples, blocks) if e.current != b]
    if args.check:
        for example, block in drifted:
            sys.stdout.writelines(difflib.unified_diff(
                [l + "\n" for l in example.current], [l + "\n" for l in block],
                f"{example.name} (README)", f"{example.name} (regenerated)"))
        print(f"{len(examples)} examples, {len(drifted)} drifted"
              + (": run `python scripts/readme_examples.py` and review `git diff README.md`" if drifted else ""))
        return 1 if drifted else 0
    if drifted:
        args.readme.write_text(text)
    for example, _ in drifted:
        print(f"updated {example.name}")
    print(f"{len(examples)} examples, {len(drifted)} updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
