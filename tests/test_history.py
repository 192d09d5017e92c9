"""Each variant is a kernel tree, and the bugs of this history fail exactly where the trees
say: the module-load race before 7dcd182bec27, the DISABLED records tripping
ftrace_shutdown()'s sanity check from b7ffffbb46f2 until v4.8.15 (v4.5.0
kernel/trace/ftrace.c ftrace_shutdown: `FTRACE_WARN_ON_ONCE(rec->flags)`; v4.8.17:
`rec->flags & ~FTRACE_FL_DISABLED`)."""

from __future__ import annotations

import json

import pytest

from ftrace_core.cli import main
from ftrace_core.explore.history import explore_bug, explore_history
from ftrace_core.kernels import (
    DISABLED_IGNORED_EVERYWHERE, DISABLED_RECORDS, ENABLE_AFTER_RO, ENABLE_IN_PREPARE_COMING, KERNELS,
    UPDATE_CALLS_ON_CHANGE, VARIANTS,
)
from ftrace_core.kernels.bugs import BUGS
from ftrace_core.scenario import load_scenario, run_scenario
from ftrace_core.system import boot

SHUTDOWN = next(b for b in BUGS if b.scenario == "disabled-shutdown")


def test_the_variants_are_the_trees_of_this_history_in_order():
    assert VARIANTS == ("legacy", "seed", "fixed", "v4.8.17")
    assert [KERNELS[v].commit for v in VARIANTS] == ["b7ffffbb46f2^", "b7ffffbb46f2", "7dcd182bec27", "v4.8.17"]
    # every tree has its predecessors' changes and its own
    have = [set(KERNELS[v].features) for v in VARIANTS]
    assert all(a < b for a, b in zip(have, have[1:]))
    assert have[0] == set()
    assert have[1] == {DISABLED_RECORDS}
    assert ENABLE_AFTER_RO in have[2] and UPDATE_CALLS_ON_CHANGE not in have[2]
    assert {UPDATE_CALLS_ON_CHANGE, ENABLE_IN_PREPARE_COMING, DISABLED_IGNORED_EVERYWHERE} <= have[3]


def test_which_variants_have_which_bug_follows_from_the_trees():
    expected = {b.name: [v for v in VARIANTS if b.present_in(KERNELS[v])] for b in BUGS}
    assert expected == {"module-load race": ["legacy", "seed"],
                        "DISABLED records at shutdown": ["seed", "fixed"]}
    assert [b.fixing_tree().name for b in BUGS] == ["fixed", "v4.8.17"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_boot_banner_names_the_tree(variant):
    tree = KERNELS[variant]
    dmesg = boot(variant).dmesg()
    assert dmesg.splitlines()[0].endswith(f"Linux version {tree.uname} ({tree.commit} {tree.subject}) #1 SMP")


def test_variants_command_lists_each_tree_and_its_changes(capsys):
    assert main(["variants", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["variant"] for d in data] == list(VARIANTS)
    fixed = data[2]
    assert fixed["commit"] == "7dcd182bec27" and fixed["subject"] == "ftrace/module: remove ftrace module notifier"
    assert {"file": "kernel/module.c", "function": "complete_formation", "commit": "7dcd182bec27"}.items() \
        <= fixed["changes"][0].items()
    assert main(["variants"]) == 0
    text = capsys.readouterr().out
    assert "v4.8.17: v4.8.17 Linux 4.8.17 (stable)" in text
    assert "kernel/trace/ftrace.c ftrace_shutdown() [v4.8.15]" in text


@pytest.mark.parametrize("variant,dies", [("legacy", False), ("seed", True), ("fixed", True), ("v4.8.17", False)])
def test_echo_nop_while_a_module_loads_kills_ftrace_on_the_v4_5_kernels(variant, dies):
    """kernel/trace/ftrace.c ftrace_shutdown(): with no ops left, every record's flags must be
    clear; up to v4.7 that includes FTRACE_FL_DISABLED (v4.5.0: FTRACE_WARN_ON_ONCE(rec->flags))."""
    r = run_scenario(load_scenario("disabled-shutdown"), variant)  # its schedule: hello's records DISABLED
    assert r.ftrace_disabled == dies
    if dies:
        assert r.killed_by == "FTRACE_WARN_ON_ONCE(rec->flags) in ftrace_shutdown()"
        # pr_warn("  %pS flags:%lx\n"): on the seed hello is still UNFORMED, which kallsyms
        # does not show (__module_address() skips it), so %pS prints the bare address.
        name = "0xffffffffa0000000" if variant == "seed" else "hello_answer+0x0/0xb [hello]"
        assert f"  {name} flags:2000000\n" in r.bug
        assert "WARNING: CPU: 0 PID: 1042 at kernel/trace/ftrace.c ftrace_shutdown()\n" in r.dmesg
        assert not r.invariants["ftrace_alive"]
    else:
        assert all(r.invariants.values()), r.violations


def test_the_shutdown_bug_within_one_preemption_fails_exactly_on_seed_and_fixed():
    verdict = explore_bug(SHUTDOWN, max_preemptions=1, jobs=2)
    assert verdict.disagreements() == []
    assert [v for v in VARIANTS if verdict.failing(v)] == ["seed", "fixed"]
    # the follow-up widened the window: more schedules reach it
    assert len(verdict.failing("fixed")) > len(verdict.failing("seed"))
    for v in ("seed", "fixed"):
        for schedule in verdict.failing(v):
            assert verdict.replays[v]["v4.8.17"][schedule] is None  # clean on the fix
            assert SHUTDOWN.explains(verdict.replays[v][v][schedule])


def test_history_command_exits_1_when_a_verdict_disagrees(capsys, monkeypatch):
    """A tree that claimed the shutdown fix without having it would be caught."""
    from ftrace_core.kernels import bugs

    monkeypatch.setattr(bugs, "BUGS", (bugs.Bug(SHUTDOWN.name, SHUTDOWN.scenario, SHUTDOWN.signature,
                                                SHUTDOWN.summary, fixed_by=ENABLE_AFTER_RO,
                                                introduced_by=DISABLED_RECORDS),))
    monkeypatch.setattr("ftrace_core.explore.history.BUGS", bugs.BUGS)
    assert main(["history", "--max-preemptions", "1", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["bugs"][0]["disagreements"] == [
        "fixed: does not have the bug, yet 6 schedules failed with it",
        "seed's '1@lock:ftrace_lock#2 0 1' fails with the bug on fixed, which does not have it"]


@pytest.mark.slow_explore
def test_every_schedule_of_every_bug_on_every_variant_agrees_with_the_trees():
    """The history table over every schedule (coarse granularity, no preemption bound), each
    failing schedule replayed on every variant.  (DPOR runs one schedule per class of
    equivalent ones: 81 on the race's fixed kernels, the fewest.)"""
    verdicts = explore_history(jobs=2)
    for verdict in verdicts:
        assert verdict.disagreements() == [], verdict.bug.name
        for v in VARIANTS:
            assert verdict.reports[v].complete and verdict.reports[v].schedules > 50, (v, verdict.reports[v].schedules)
    race, shutdown = verdicts
    assert [v for v in VARIANTS if race.failing(v)] == ["legacy", "seed"]
    assert [v for v in VARIANTS if shutdown.failing(v)] == ["seed", "fixed"]
    # "same behaviour as previously": the race fails on the same schedules before and at the seed
    assert sorted(race.failing("legacy")) == sorted(race.failing("seed"))
