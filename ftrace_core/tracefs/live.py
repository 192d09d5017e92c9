"""A running emulated system: one thread owns it, keeps its CPUs busy with an activity, and
runs every request from elsewhere (the FUSE mount's threads) between two of its steps.

Unicorn and the port are not thread-safe, so nothing but the engine thread touches the
System: other threads `submit()` a function and wait for its result.
"""

from __future__ import annotations

import queue
import shlex
import threading
from dataclasses import dataclass
from typing import Callable, TypeVar

from emu.cpu import Task
from emu.errors import GuestFault

from ..errors import FtraceError

T = TypeVar("T")

#: What the CPUs run while mounted, when not told: the kernel workload, a file at a time.
DEFAULT_ACTIVITY = "workload"
#: Pause between two steps of an activity (a box is not busy all the time; nor is the host).
STEP_PAUSE_S = 0.02


@dataclass(frozen=True)
class Activity:
    """What the emulated CPUs keep running: `workload`, `none`, or `call SYMBOL ARGS...`."""

    symbol: str | None
    args: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Activity":
        words = shlex.split(text)
        if words == ["none"]:
            return cls(None)
        if words == ["workload"]:
            return cls("workload_run", (1,))
        if len(words) >= 2 and words[0] == "call":
            try:
                return cls(words[1], tuple(int(w, 0) for w in words[2:]))
            except ValueError:
                raise FtraceError(f"--activity {text!r}: arguments must be integers") from None
        raise FtraceError(f"--activity {text!r}: expected workload, none, or 'call SYMBOL ARGS...'")


class LiveSystem:
    def __init__(self, system, activity: Activity):
        self.system = system
        self.activity = activity
        self._requests: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.stepped = threading.Condition()  # notified after each step of the activity
        self.steps = 0
        self.last_fault: Exception | None = None
        self._thread: threading.Thread | None = None  # made by start(): `mount` forks first
        if activity.symbol is not None:  # a bad symbol is an error now, not in the thread
            system.kernel.check_call(activity.symbol, activity.args)
        for cpu in system.cpus:
            cpu.set_task(Task("workload", 1100 + cpu.index))

    def start(self) -> None:
        # A Thread made before a fork is dead in the child however it is started.
        self._thread = threading.Thread(target=self._run, name="ftrace-emu engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._requests.put(None)
        if self._thread is not None and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def submit(self, fn: Callable[..., T]) -> T:
        """fn(system) on the engine thread; its result, or its exception raised here."""
        if self._thread is None:
            return fn(self.system)  # not started: no one else uses the system
        if not self._thread.is_alive():
            raise RuntimeError("the engine thread has stopped")
        done = threading.Event()
        box: list = []
        self._requests.put((fn, done, box))
        done.wait()
        ok, value = box
        if not ok:
            raise value
        return value

    def _run(self) -> None:
        cpu = 0
        while not self._stop.is_set():
            busy = self.activity.symbol is not None
            try:
                item = self._requests.get(timeout=STEP_PAUSE_S if busy else None)
            except queue.Empty:
                item = ()
            while item:
                fn, done, box = item
                try:
                    box[:] = [True, fn(self.system)]
                except BaseException as exc:  # handed to the thread that asked
                    box[:] = [False, exc]
                done.set()
                try:
                    item = self._requests.get_nowait()
                except queue.Empty:
                    item = ()
            if item is None or self._stop.is_set():
                break
            if busy:
                self._step(cpu)
                cpu = (cpu + 1) % len(self.system.cpus)

    def _step(self, cpu: int) -> None:
        try:
            self.system.call(self.activity.symbol, *self.activity.args, cpu=cpu)
        except GuestFault as fault:  # an oops is in dmesg, as on a box; the box goes on
            self.last_fault = fault
        except Exception as exc:  # e.g. a soft lockup's budget: the activity stops, the mount stays
            self.last_fault = exc
            self.activity = Activity(None)
        with self.stepped:
            self.steps += 1
            self.stepped.notify_all()
