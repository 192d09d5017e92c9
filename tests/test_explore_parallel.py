"""One variant's search split among worker processes (--jobs) or the actors of a Ray cluster
(--cluster): the report is the one a single process gives, whatever order the workers report
in; no process outlives an exploration, however it ends; the cluster's errors are one line."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import socket
import sys

import pytest

from emu.explore import Plan, RunTrace, Search, explore
from ftrace_core.cli import main
from ftrace_core.explore import Prepared, explore_variant
from ftrace_core.explore.parallel import ForkedWorkers, SubtreeWorker, merged
from ftrace_core.explore.runner import make_runner
from ftrace_core.scenario import load_scenario
from test_explore import TOY, toy_runner
from test_forktree import descendants

#: A small bounded exploration that fails: with one preemption, the seed kernel kills ftrace
#: in ftrace_shutdown() on one schedule of 33 (and 20 runs with the sleep-set reduction).
SHUTDOWN = load_scenario("disabled-shutdown")
HAVE_RAY = importlib.util.find_spec("ray") is not None
#: CI installs the cluster extra: there a missing Ray is a failure, not a reason to skip.
needs_ray = pytest.mark.skipif(not HAVE_RAY and os.environ.get("CI") != "true",
                               reason="Ray is not installed (pip install -e '.[cluster]'); CI runs this")


class Shuffled:
    """.parallel.Workers in this process, over the toy program: each worker's messages and
    runs are taken in a random order, so merged sees the orders of completion real workers
    make rarely (a request for work answered late, a worker done before its answer...)."""

    def __init__(self, runner, count: int, bound, reduce: bool, seed: int, reserve: int = 0):
        self.count, self.reserve = count, reserve
        self.rng = random.Random(seed)
        self.workers = [SubtreeWorker(runner, bound, reduce) for _ in range(count)]
        self.inbox: list[list] = [[] for _ in range(count)]
        self.subtrees = 0

    def assign(self, worker, root) -> None:
        self.inbox[worker].append(("start", root))
        self.subtrees += 1

    def ask(self, worker, most) -> None:
        self.inbox[worker].append(("give", most))

    def events(self) -> list:
        worker = self.rng.choice([w for w in range(self.count) if self.inbox[w] or self.workers[w].busy])
        mine = self.workers[worker]
        if self.inbox[worker] and (not mine.busy or self.rng.random() < 0.5):
            kind, body = self.inbox[worker].pop(0)
            if kind == "start":
                mine.start(body)
                return []
            return [(worker, "gave", mine.give(body))]
        visit = mine.step()
        return [(worker, "visit", visit)] if visit is not None else [(worker, "done", None)]


def _seen(visits) -> list:
    return [(v.order, v.broke, v.trace.schedule, v.trace.outcome, v.trace.pruned,
             [(n.chosen, n.preemptions) for n in v.trace.nodes[-1:]]) for v in visits]


@pytest.mark.parametrize("cpus,reduce,bound", [(2, True, None), (3, True, None), (3, False, 2), (3, True, 1)])
def test_merged_runs_are_one_searchs_whatever_order_workers_report_in(cpus, reduce, bound):
    programs = {c: TOY[c] for c in range(cpus)}
    plans: list = []

    def recording(plan: Plan) -> RunTrace:
        plans.append(plan.prefix)
        return toy_runner(programs)(plan)

    list(explore(recording, bound, reduce))
    runner = toy_runner(programs, broken=frozenset(plans[2::5]))  # some runs break
    one = list(Search(runner, bound, reduce).visits())
    assert any(v.broke for v in one)
    for seed in range(8):
        workers = Shuffled(runner, 2 + seed % 2, bound, reduce, seed, reserve=seed % 3)
        assert _seen(merged(workers)) == _seen(one)
        assert workers.subtrees > 1  # the search was split
        # a limit stops where one search stops, whatever the workers had found beyond it
        limit = 1 + seed * len(one) // 10
        expected = list(explore(runner, bound, reduce, limit))
        got = list(merged(Shuffled(runner, 3, bound, reduce, seed), limit))
        assert [v.trace.schedule for v in got] == [t.schedule for t in expected]


def _report(r) -> tuple:
    """Everything a report says of the runs (not the times, nor the runner's counts)."""
    return (r.runs, r.pruned, r.schedules, r.complete, r.seen, r.final_states, r.kinds, r.failing_schedules,
            r.failing_kind, r.failing_preemptions)


@pytest.mark.parametrize("reduce,runner", [(False, "prefix"), (True, "prefix"), (False, "fork-from-boot")])
def test_jobs_give_the_report_of_one_process(reduce, runner):
    # The split search's mechanics, with the reduction it splits (sleep sets; within a bound
    # they miss this scenario's failure, which is why explore refuses them there).
    por = "sleep-sets" if reduce else None
    one = explore_variant(SHUTDOWN, "seed", max_preemptions=1, reduce=reduce, runner=runner, por=por)
    two = explore_variant(SHUTDOWN, "seed", max_preemptions=1, reduce=reduce, runner=runner, jobs=2)
    assert _report(two) == _report(one)
    assert one.complete and one.runs > 5 and bool(one.failing_schedules) == (not reduce)
    assert descendants() == []


def test_jobs_with_a_limit_stop_at_the_run_one_process_stops_at():
    race = load_scenario("race")
    one = explore_variant(race, "legacy", limit=30, por="sleep-sets")  # what a split search uses
    two = explore_variant(race, "legacy", limit=30, jobs=2)
    assert not one.complete and one.runs + one.pruned == 30
    assert _report(two) == _report(one)


def test_an_interrupted_or_failing_parallel_exploration_leaves_no_process():
    """Ctrl-C (here raised from the progress callback) or a worker killed: every worker,
    and every process a worker's runner forked, is gone when explore_variant returns."""
    def interrupt(report) -> None:
        if report.runs + report.pruned >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        explore_variant(SHUTDOWN, "seed", max_preemptions=1, reduce=False, jobs=2, progress=interrupt)
    assert descendants() == []

    def kill_a_worker(report) -> None:
        if report.runs == 2:
            workers = [pid for pid, _ in descendants() if _parent(pid) == os.getpid()]
            os.kill(workers[0], signal.SIGKILL)

    with pytest.raises(RuntimeError, match="exploring worker .* died"):
        explore_variant(SHUTDOWN, "seed", max_preemptions=1, reduce=False, jobs=2, progress=kill_a_worker)
    assert [state for pid, state in descendants() if _parent(pid) == os.getpid()] == []


def _parent(pid: int) -> int | None:
    """Its parent's pid; None once it is gone (a run's process may end while we look)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except FileNotFoundError:
        return None


def _json_runs(args: list[str], capsys) -> dict:
    assert main(args + ["--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["variants"]
    for entry in entries.values():  # what the search cost, not what it found
        del entry["seconds"], entry["schedules_per_s"], entry["verdict_hits"]
    return entries


def test_the_cli_splits_one_variant_among_its_jobs(capsys):
    args = ["explore", "disabled-shutdown", "--variant", "seed", "--max-preemptions", "1"]
    one, two = _json_runs(args, capsys), _json_runs(args + ["--jobs", "2"], capsys)
    assert two == one and one["seed"]["failing"] == 1


class FakeCluster:
    """Stands in for .cluster.Cluster: its workers are forked here."""

    made: list = []

    def __init__(self, address: str, most: int | None = None):
        self.address, self.most, self.closed = address, most, False
        FakeCluster.made.append(self)

    def workers(self, scenario, variant, **s):
        prepared = Prepared(scenario, variant, s["granularity"], s["quantum"], patching=s["patching"])
        return ForkedWorkers(2, lambda in_child: make_runner(prepared, s["runner"], s["threshold_s"], in_child),
                             s["max_preemptions"], s["reduce"])

    def close(self) -> None:
        self.closed = True


def test_the_cli_explores_each_variant_on_the_cluster_it_names(capsys, monkeypatch):
    monkeypatch.setattr("ftrace_core.explore.cluster.Cluster", FakeCluster)
    args = ["explore", "disabled-shutdown", "--variant", "seed", "--max-preemptions", "1"]
    on = _json_runs(args + ["--cluster", "head:6379", "--jobs", "3"], capsys)
    assert on == _json_runs(args, capsys)
    (made,) = FakeCluster.made
    assert (made.address, made.most, made.closed) == ("head:6379", 3, True)


def test_the_cluster_needs_ray_and_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    assert main(["explore", "--variant", "seed", "--cluster", "local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -e '.[cluster]'" in err and "Traceback" not in err


@needs_ray
def test_a_bad_cluster_address_is_one_line(capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address, message in ((f"127.0.0.1:{port}", f"no Ray cluster at 127.0.0.1:{port}"),
                             ("nowhere", "bad cluster address 'nowhere'")):
        assert main(["explore", "--variant", "seed", "--cluster", address]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert descendants() == []


@needs_ray
def test_a_local_ray_cluster_gives_the_report_of_one_process(tmp_path, monkeypatch):
    """Each actor boots the variant itself and explores with a ForkTree of its own; nothing
    is written to $HOME, and no process is left once the cluster is closed."""
    from ftrace_core.explore.cluster import Cluster

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    expected = {reduce: explore_variant(SHUTDOWN, "seed", max_preemptions=1, reduce=reduce, por="sleep-sets")
                for reduce in (False, True)}  # what a cluster splits
    with Cluster("local") as cluster:
        assert cluster.size == os.cpu_count()
        for reduce, one in expected.items():
            on = explore_variant(SHUTDOWN, "seed", max_preemptions=1, reduce=reduce, cluster=cluster)
            assert _report(on) == _report(one)
            assert on.checkpoints > 0  # the actors' prefix runners
    assert list(home.iterdir()) == []
    assert descendants() == []
