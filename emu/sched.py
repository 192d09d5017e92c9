"""Cooperative work on the emulated CPUs: kernel paths written in Python are generators that
yield at the points where the real kernel could be interleaved with the other CPU.

This module holds what every such path yields (a named Point, just after the step it names,
or just before trying a lock; emu.cpu.Quantum between slices of guest code; Blocked while a
lock is held elsewhere), the locks, and the driver that runs one path with nothing else
running.  emu.schedule alternates the CPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Point:
    """A named interleaving point: `label` is stable (schedules refer to it), `detail` says
    what is happening for timelines and logs."""

    label: str
    detail: str = ""


@dataclass(frozen=True)
class Blocked:
    """Yielded while a task waits for a lock another task holds: it is not runnable."""

    lock: "Lock"


class Lock:
    """A sleeping lock (ftrace_lock, module_mutex, text_mutex) as a scheduler object."""

    def __init__(self, name: str):
        self.name = name
        self.owner: object | None = None
        self.tracker = None  # an emu.footprint.Tracker while steps are being recorded

    def acquire(self, owner: object = True) -> Generator[object, None, None]:
        yield Point(f"lock:{self.name}", f"mutex_lock(&{self.name})")
        while self.owner is not None:
            if self.tracker is not None:
                self.tracker.touch(("lock", self.name), write=False)
            yield Blocked(self)
        self.owner = owner
        if self.tracker is not None:
            self.tracker.touch(("lock", self.name))

    def release(self) -> None:
        self.owner = None
        if self.tracker is not None:
            self.tracker.touch(("lock", self.name))

    def __repr__(self) -> str:
        return f"<Lock {self.name} {'held' if self.owner is not None else 'free'}>"


class Deadlock(RuntimeError):
    """A path waited for a lock that nothing else could release."""


def run_to_completion(gen: Generator[object, None, T]) -> T:
    """Drive a kernel path with nothing else running: every yield simply continues."""
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        if isinstance(step, Blocked):
            gen.close()
            raise Deadlock(f"waiting for {step.lock.name}, which nothing else can release")
