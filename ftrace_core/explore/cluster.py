"""Exploring on a Ray cluster: one actor per CPU, each with a worker process of its own that
boots the variant and explores subtrees of the search with its own runner, split and merged
as .parallel does for forked workers, so the report is the one a single process gives.

Ray is optional (pip install -e '.[cluster]'), imported only here and only when a cluster is
asked for.  The worker process is started afresh by its actor, not forked from it, and
reports as a forked worker does (.parallel.serve); the actor relays, in calls of a quarter
of a second at most: each hands on what the coordinator sent since the last and brings back
what the worker reported meanwhile, at once if it gave work away or finished its subtree.
Ray's round trip (about a millisecond) is a small part of a call, and the worker goes on
exploring between calls.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, NoReturn

from emu.explore import Branch

from ..errors import FtraceError
from ..scenario import Scenario
from emu.wire import receive, send

from .parallel import serve

INSTALL = "pip install -e '.[cluster]'"
#: How long an actor's call waits for its worker's reports (seconds), at most.
BUDGET_S = 0.25
#: The cluster's shared memory for objects: the runs that come back are small.
OBJECT_STORE_BYTES = 80 << 20
#: How long to wait for a cluster's address to answer before saying it does not.
CONNECT_TIMEOUT_S = 5.0


class ClusterError(FtraceError):
    """Ray is missing, the cluster cannot be reached, or one of its actors failed."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster needs Ray, an optional extra: {INSTALL}") from None
    return ray


class Cluster:
    """A Ray cluster to explore on.  address: a running cluster's (its head's host:port, as
    `ray start --head` prints it; "auto": the one running on this machine), or "local" to
    start one for this object's lifetime, with one CPU per core of this machine and its
    files in a temporary directory.  One actor per CPU free (at most `most`).  Close it (or
    use it as a context manager): the actors end, and a local cluster with them.  Every
    machine of a cluster needs this project installed as here (the guest's files too)."""

    def __init__(self, address: str, most: int | None = None, budget_s: float = BUDGET_S):
        self.address, self.budget_s = address, budget_s
        self._actors: list = []
        self._temp: str | None = None
        self._saved_env: dict[str, str | None] = {}
        if address == "local":
            # The token that authenticates the cluster's processes to each other is made up
            # for this cluster and handed down in the environment, not written to
            # ~/.ray/auth_token; Ray reads its settings when imported (or refreshed).
            self._setenv({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                          "RAY_USAGE_STATS_ENABLED": "0"})
        try:
            self._ray = ray = _import_ray()
        except ClusterError:
            self._restore_env()
            raise
        try:
            if address == "local":
                _reread_settings()
                self._start_local()
            else:
                if address != "auto":  # Ray's own search for a cluster on this machine fails at once
                    _check_reachable(address)
                try:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
                except Exception as exc:
                    raise ClusterError(f"cannot join the Ray cluster at {address}: {_first_line(exc)}") from None
            cpus = int(ray.available_resources().get("CPU", 0))
            if cpus < 1:
                raise ClusterError(f"the Ray cluster at {address} has no CPU free")
            count = min(cpus, most) if most else cpus
            actor = ray.remote(num_cpus=1)(_Explorer)
            self._actors = [actor.remote() for _ in range(count)]
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> int:
        return len(self._actors)

    def _start_local(self) -> None:
        # Nothing in $HOME: Ray's session files go to a directory of ours (short: Ray's socket
        # paths must fit in 107 bytes).  No dashboard, no usage report, a small object store.
        self._temp = tempfile.mkdtemp(prefix="ftrace-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        # A Ctrl-C in the middle of ray.init() would leave the processes it started so far
        # behind, unknown to ray.shutdown(): it is held back until the start is over (and
        # then interrupts as usual).  The processes inherit the mask: close() stops them.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                           logging_level=logging.ERROR, object_store_memory=OBJECT_STORE_BYTES,
                           _temp_dir=self._temp)
        except Exception as exc:
            raise ClusterError(f"cannot start a local Ray cluster: {_first_line(exc)}") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _setenv(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def workers(self, scenario: Scenario, variant: str, **settings: Any) -> "RayWorkers":
        """The actors, each with the variant booted and a search ready (settings: those of
        explore_variant: granularity, quantum, patching, runner, threshold_s, max_preemptions,
        reduce), for .parallel.merged."""
        ray = self._ray
        try:
            ray.get([a.prepare.remote(scenario, variant, settings) for a in self._actors])
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"a cluster worker failed to boot {variant}: {_first_line(exc)}") from None
        return RayWorkers(ray, self._actors, self.budget_s)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the actors (each first ends its worker process) and leave the cluster;
        stop it if it is ours.  Safe to call again."""
        ray, actors = self._ray, self._actors
        self._actors = []
        if actors:
            try:
                ray.get([a.end.remote() for a in actors], timeout=60)
            except Exception:
                pass  # an actor already gone: killing it below is all that is left
            for a in actors:
                ray.kill(a)
        if ray.is_initialized():
            ray.shutdown()
        if self._saved_env:
            self._restore_env()
            _reread_settings()
        if self._temp is not None:
            _remove(self._temp)
            self._temp = None


class RayWorkers:
    """.parallel.Workers over Ray actors.  Each actor relays for a worker process of its own
    (see _Explorer): a call hands it what the coordinator sent since the last one and
    returns what it reported meanwhile, so a busy actor is always in a call."""

    def __init__(self, ray: Any, actors: list, budget_s: float):
        self.count = len(actors)
        self.reserve = self.count  # a request for work reaches an actor with its next call: ask ahead
        self.stats: dict[int, object] = {}
        self._ray, self._actors, self._budget_s = ray, actors, budget_s
        self._calls: dict = {}  # object ref -> worker
        self._outbox: list[list] = [[] for _ in actors]

    def assign(self, worker: int, root: Branch | None) -> None:
        self._outbox[worker].append(("start", root))
        self._call(worker)  # an idle worker is in no call

    def ask(self, worker: int, most: int) -> None:
        self._outbox[worker].append(("give", most))  # a busy one is: this goes with its next

    def _call(self, worker: int) -> None:
        messages, self._outbox[worker] = self._outbox[worker], []
        self._calls[self._actors[worker].work.remote(messages, self._budget_s)] = worker

    def events(self) -> list[tuple[int, str, object]]:
        ray = self._ray
        ready, _ = ray.wait(list(self._calls), num_returns=1)
        worker = self._calls.pop(ready[0])
        try:
            reported = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"a cluster worker failed: {_first_line(exc)}") from None
        events = []
        for kind, body in reported:
            if kind == "done":
                self.stats[worker], body = body, None
            events.append((worker, kind, body))
        if not reported or reported[-1][0] != "done":
            self._call(worker)  # still busy
        return events

    def close(self) -> None:
        """End the variant's searches: each actor's worker process ends, with the processes
        it forked (an actor still in a call finishes it first: an actor runs one at a time)."""
        self._calls = {}
        try:
            self._ray.get([a.end.remote() for a in self._actors])
        except self._ray.exceptions.RayError:
            pass  # a dead actor left nothing to end; Cluster.close() kills the rest


class _Explorer:
    """A Ray actor (made one by Cluster) that relays for a worker process of its own
    (.parallel.serve), started afresh rather than forked: a Ray worker is a large process
    with a score of threads, which every fork of a run would copy (a run then costs 15-25%
    more CPU time), and forking a process with threads is asking for trouble."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._conn: socket.socket | None = None

    def prepare(self, scenario: Scenario, variant: str, settings: dict) -> None:
        """Start a worker process with the variant booted and a search ready."""
        self.end()
        mine, theirs = socket.socketpair()
        try:
            main = f"from {__name__} import _worker_main; _worker_main({theirs.fileno()})"
            self._proc = subprocess.Popen([sys.executable, "-c", main], pass_fds=[theirs.fileno()],
                                          stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = mine
        send(mine, (scenario, variant, settings))
        reply = receive(mine)
        if reply is None or reply[0] == "error":
            self.end()
            raise reply[1] if reply is not None else RuntimeError(f"the worker process for {variant} died booting")

    def work(self, messages: list, budget_s: float) -> list:
        """Pass on the coordinator's messages; then what the worker process reports for
        budget_s at most, or until it hands over work or finishes its subtree (the
        coordinator wants those at once)."""
        conn = self._conn
        for message in messages:
            send(conn, message)
        reported: list = []
        deadline = time.monotonic() + budget_s
        while True:
            if not select.select([conn], [], [], max(deadline - time.monotonic(), 0))[0]:
                return reported
            message = receive(conn)
            if message is None:
                raise RuntimeError("the exploring worker process died")
            if message[0] == "error":
                raise message[1]
            reported.append(message)
            if message[0] in ("gave", "done"):
                return reported

    def end(self) -> None:
        """End the worker process: it finishes its run, ends the processes it forked, exits."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.wait()
            self._proc = None


def _worker_main(fd: int) -> NoReturn:
    """The worker process of an actor: boot the variant it is sent, tell the actor, serve."""
    from .run import Prepared
    from .runner import make_runner

    conn = socket.socket(fileno=fd)
    spec = receive(conn)
    if spec is None:  # the actor is gone already
        os._exit(0)
    scenario, variant, settings = spec
    try:
        s = dict(settings)
        prepared = Prepared(scenario, variant, s.pop("granularity"), s.pop("quantum"), patching=s.pop("patching"),
                            footprints=s.pop("footprints"), cache_verdicts=s.pop("cache_verdicts"))
        runner, threshold_s = s.pop("runner"), s.pop("threshold_s")
    except Exception as exc:
        send(conn, ("error", ClusterError(f"{type(exc).__name__}: {exc}")))
        os._exit(0)
    send(conn, ("ready", None))
    serve(conn, lambda in_child: make_runner(prepared, runner, threshold_s, in_child), s.pop("max_preemptions"),
          s.pop("reduce"))


def _reread_settings() -> None:
    """Have Ray read its settings from the environment again (it read them when imported)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:
        return  # a Ray without token authentication: nothing to read again
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _remove(directory: str, tries: int = 30) -> None:
    """Remove a local cluster's directory, again while something still writes in it: a Ray
    process that was stopping anyway (on Ctrl-C, say) may log its last lines after shutdown."""
    for _ in range(tries):
        shutil.rmtree(directory, ignore_errors=True)
        if not os.path.exists(directory):
            return
        time.sleep(0.1)


def _check_reachable(address: str) -> None:
    """Fail at once, and in one line, if nothing listens at host:port: Ray itself retries
    for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"bad cluster address {address!r}: expected host:port (the head's, as `ray start "
                           f"--head` prints it), auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(f"no Ray cluster at {address}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
