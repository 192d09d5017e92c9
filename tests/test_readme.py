"""The README's examples are real output: scripts/readme_examples.py --check reruns every marked
example and fails, with a diff, when a block has drifted.  To fix a failure, run
`python scripts/readme_examples.py` and review `git diff README.md`."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "readme_examples.py"


def _script():
    """scripts/readme_examples.py as a module (registered, as its dataclasses need)."""
    if "readme_examples" not in sys.modules:
        spec = importlib.util.spec_from_file_location("readme_examples", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["readme_examples"] = module
        spec.loader.exec_module(module)
    return sys.modules["readme_examples"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="the examples build a module with gcc")
def test_readme_examples_match_real_output():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, (
        "README examples differ from real output (run `python scripts/readme_examples.py`, then review "
        f"`git diff README.md`):\n{proc.stdout}{proc.stderr}")


def test_rules_abridge_as_declared():
    rules = _script()
    text = "a\nCPU 0 x\nb\nc\nbug here\nd\nend: ok\ne\n"
    assert rules.apply_rules(text, ["from=^CPU", "until=^c", "from=bug", "to=end"]) == \
        ["CPU 0 x", "b", "bug here", "d", "end: ok"]
    assert rules.apply_rules(text, ["head=2", "..."]) == ["a", "CPU 0 x", "..."]
    assert rules.apply_rules(text, ["tail=1", "..."]) == ["...", "e"]
    assert rules.apply_rules(text, ["lines=2,4-5", "..."]) == ["...", "CPU 0 x", "...", "c", "bug here", "..."]
    assert rules.apply_rules(text, ["grep=^[ab]$"]) == ["a", "b"]
    assert rules.apply_rules("t /tmp/x1/f  \n\n", ["sub=|/tmp/x[0-9]/|DIR/|"]) == ["t DIR/f"]
    with pytest.raises(rules.ExampleError, match="matches no line"):
        rules.apply_rules(text, ["from=nowhere"])


def test_markers_parse():
    rules = _script()
    readme = "\n".join([
        "<!-- example-file: m.c -->", "```c", "int x;", "```",
        "<!-- example: ftrace-emu boot -->", "```", "old", "```",
        "<!-- example:", "setup: make", "$ tool a \\", "    b", "    tail=1 ...",
        "$ ftrace-emu shell", "ftrace-emu# ls", "-->", "", "```text", "```",
    ])
    lines, examples, files = rules.parse_readme(readme)
    assert files == {"m.c": "int x;\n"}
    assert [e.current for e in examples] == [["old"], []]
    steps = examples[1].steps
    assert [s.kind for s in steps] == ["setup", "shown", "shown"]
    assert steps[1].display == ["$ tool a \\", "    b"] and steps[1].rules == ["tail=1", "..."]
    assert steps[2].stdin == ["ls"]
