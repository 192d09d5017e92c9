"""Two CPUs in alternation: a deterministic scheduler driven by a schedule string.

A schedule is a list of segments, separated by spaces, each saying which CPU runs and for how
long; choices happen only at the yields of the tasks (emu.sched):

    C            run CPU C until its task finishes or blocks on a lock
    C:N          run CPU C for N steps (yields)
    C@LABEL      run CPU C until it yields the point LABEL (its next one)
    C@LABEL#K    ... until the K-th LABEL point CPU C has yielded since the start
    rr  rr:N     round-robin: alternate the runnable CPUs every N steps (1 by default) to the end
    q=N          (first) guest code runs in quanta of N instructions

A segment whose CPU cannot run (finished, or waiting for a lock) ends at once.  Whatever
remains after the last segment runs round-robin.  The schedule of a run, as printed by
Scheduler.run(), names every switch by its point, so it replays exactly, and runs on any
kernel whose paths yield the same points.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable, Generator, Iterable

from .cpu import Quantum
from .sched import Blocked, Deadlock, Lock, Point

DEFAULT_QUANTUM = 1000

_SEGMENT = re.compile(r"^(?:(?P<rr>rr)(?::(?P<rrn>\d+))?|(?P<cpu>\d+)(?::(?P<steps>\d+)|@(?P<label>[^#\s]+)(?:#(?P<k>\d+))?)?)$")


class ScheduleError(ValueError):
    """A schedule string that does not parse, names a CPU that does not exist, or a point no
    kernel path yields."""


#: Every point a kernel path yields, by label: the schedule language's vocabulary.  (A test
#: runs every scenario and checks each label met is here.)
POINT_LABELS = frozenset({
    "command", "quantum",
    # the module loader (kernel/module.c)
    "add_unformed_module", "ftrace_module_init", "module_enable_ro", "complete_formation",
    "prepare_coming_module", "do_init_module", "module_live", "set_all_modules_text_rw",
    "set_all_modules_text_ro",
    # ftrace (kernel/trace/ftrace.c, arch/x86/kernel/ftrace.c)
    "ftrace_update_code", "ftrace_module_enable", "ftrace_release_mod", "ftrace_replace_code",
    "ftrace_arch_code_modify_prepare", "ftrace_arch_code_modify_post_process", "set_kernel_text_rw",
    "set_kernel_text_ro", "run_sync", "bp_write", "bp_update", "bp_finish", "text_byte",
})
#: The locks, whose `lock:NAME` points are met just before each attempt to take them;
#: module_wq:MODULE is the wait for a module of that name to finish loading.
LOCK_NAMES = ("ftrace_lock", "module_mutex", "trace_types_lock")
LOCK_PREFIXES = ("module_wq:",)


def check_label(label: str) -> None:
    """A ScheduleError naming the label and the nearest known ones, if no path yields it."""
    if label in POINT_LABELS:
        return
    if label.startswith("lock:"):
        name = label[5:]
        if name in LOCK_NAMES or any(name.startswith(p) and len(name) > len(p) for p in LOCK_PREFIXES):
            return
    known = sorted(POINT_LABELS) + [f"lock:{n}" for n in LOCK_NAMES]
    near = difflib.get_close_matches(label, known, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(near)}?)" if near else f" (known points: {', '.join(known)})"
    raise ScheduleError(f"schedule: no kernel path yields a point {label!r}{hint}")


@dataclass(frozen=True)
class Segment:
    cpu: int | None  # None: round-robin
    steps: int | None = None
    label: str | None = None
    occurrence: int | None = None
    rr_every: int = 1

    def __str__(self) -> str:
        if self.cpu is None:
            return "rr" if self.rr_every == 1 else f"rr:{self.rr_every}"
        if self.steps is not None:
            return f"{self.cpu}:{self.steps}"
        if self.label is not None:
            return f"{self.cpu}@{self.label}" + (f"#{self.occurrence}" if self.occurrence else "")
        return str(self.cpu)


@dataclass
class Schedule:
    segments: list[Segment] = field(default_factory=list)
    quantum: int = DEFAULT_QUANTUM

    @classmethod
    def parse(cls, text: str, nr_cpus: int = 2, check: Callable[[str], None] | None = None) -> "Schedule":
        """check: called on every label (check_label for the kernel's paths), to refuse a
        label no task would yield before anything runs."""
        sched = cls()
        tokens = text.replace(",", " ").split()
        for i, token in enumerate(tokens):
            if token.startswith("q="):
                if i != 0 or not token[2:].isdigit() or int(token[2:]) <= 0:
                    raise ScheduleError(f"schedule: {token!r}: q=N must come first, N a positive number")
                sched.quantum = int(token[2:])
                continue
            m = _SEGMENT.match(token)
            if m is None:
                raise ScheduleError(f"schedule: cannot parse {token!r} (expected C, C:N, C@LABEL[#K], rr or rr:N)")
            if m["rr"]:
                sched.segments.append(Segment(None, rr_every=int(m["rrn"] or 1)))
                continue
            cpu = int(m["cpu"])
            if cpu >= nr_cpus:
                raise ScheduleError(f"schedule: {token!r}: no CPU {cpu} (CPUs are 0-{nr_cpus - 1})")
            seg = Segment(cpu, int(m["steps"]) if m["steps"] else None, m["label"],
                          int(m["k"]) if m["k"] else None)
            if seg.label is not None and check is not None:
                check(seg.label)
            if seg.steps == 0 or seg.occurrence == 0:
                raise ScheduleError(f"schedule: {token!r}: counts start at 1")
            sched.segments.append(seg)
        return sched

    def __str__(self) -> str:
        parts = [] if self.quantum == DEFAULT_QUANTUM else [f"q={self.quantum}"]
        return " ".join(parts + [str(s) for s in self.segments])


@dataclass
class TaskState:
    cpu: int
    gen: Generator[object, None, object]
    done: bool = False
    result: object = None
    blocked_on: Lock | None = None
    counts: dict[str, int] = field(default_factory=dict)
    last_label: str | None = None
    steps: int = 0


@dataclass
class Step:
    """One resumption of one CPU's task, as observers see it."""

    index: int
    cpu: int
    value: object  # what it yielded: Point, Quantum, Blocked, or None when it finished
    label: str | None
    occurrence: int | None


def label_of(value: object) -> str | None:
    if isinstance(value, Point):
        return value.label
    if isinstance(value, Quantum):
        return "quantum"
    return None


class Scheduler:
    """Runs one task per CPU, switching only where a schedule says, at the tasks' yields."""

    def __init__(self, tasks: dict[int, Generator[object, None, object]],
                 on_switch: Callable[[int], None] = lambda cpu: None,
                 observers: Iterable[Callable[[Step], None]] = (), max_steps: int = 1_000_000):
        self.tasks = {cpu: TaskState(cpu, gen) for cpu, gen in sorted(tasks.items())}
        self.on_switch = on_switch
        self.observers = list(observers)
        self.max_steps = max_steps
        self.steps = 0
        self.ran: list[Segment] = []  # the schedule as it happened
        #: Segments of the schedule asked for that the run could not follow: a label the CPU
        #: never reached (or reached fewer times than asked) before it finished or waited.
        self.unfollowed: list[str] = []
        self.holders: dict[str, int] = {}  # lock name -> CPU that took it last

    # -- the state of a task ------------------------------------------------------------------
    def runnable(self, cpu: int) -> bool:
        task = self.tasks.get(cpu)
        if task is None or task.done:
            return False
        return task.blocked_on is None or task.blocked_on.owner is None

    def all_done(self) -> bool:
        return all(t.done for t in self.tasks.values())

    def _step(self, task: TaskState) -> object:
        self.on_switch(task.cpu)
        pending_lock = task.last_label[5:] if task.last_label and task.last_label.startswith("lock:") else None
        try:
            value = next(task.gen)
        except StopIteration as stop:
            task.done, task.result, value = True, stop.value, None
        self.steps += 1
        task.steps += 1
        if pending_lock and not isinstance(value, Blocked):
            self.holders[pending_lock] = task.cpu
        task.blocked_on = value.lock if isinstance(value, Blocked) else None
        label = label_of(value)
        occurrence = None
        if label is not None:
            occurrence = task.counts[label] = task.counts.get(label, 0) + 1
            task.last_label = label
        elif not isinstance(value, Blocked):
            task.last_label = None
        step = Step(self.steps, task.cpu, value, label, occurrence)
        for observer in self.observers:
            observer(step)
        if self.steps > self.max_steps:
            raise ScheduleError(f"run exceeded {self.max_steps} steps: a task does not terminate")
        return value

    # -- running a schedule ---------------------------------------------------------------------
    def run(self, schedule: Schedule) -> str:
        """Run the tasks under schedule; return the schedule that ran, as a replayable string."""
        for seg in schedule.segments:
            if self.all_done():
                break
            if seg.cpu is None:
                self._round_robin(seg.rr_every)
                break
            self._run_segment(seg)
        if not self.all_done():
            self._round_robin(1)
        return self.schedule_string(schedule.quantum)

    def schedule_string(self, quantum: int = DEFAULT_QUANTUM) -> str:
        """What has run so far, as a schedule string that replays it."""
        return str(Schedule(_merge(self.ran), quantum))

    def run_until_point(self, cpu: int, is_point: Callable[[str], bool]) -> None:
        """Run cpu until it yields a point is_point accepts, waits for a lock, or ends: one
        transition for the explorer, recorded like a segment."""
        task = self.tasks[cpu]
        taken = 0
        while self.runnable(cpu):
            value = self._step(task)
            taken += 1
            if task.done or isinstance(value, Blocked):
                break
            label = label_of(value)
            if label is not None and is_point(label):
                break
        self._record(task, taken)

    def _run_segment(self, seg: Segment) -> None:
        task = self.tasks[seg.cpu]
        target = None
        sitting = False
        if seg.label is not None:
            target = seg.occurrence or task.counts.get(seg.label, 0) + 1
            reached = task.counts.get(seg.label, 0)
            # A CPU sitting at that very point may be named again (a printed schedule names a
            # CPU that only tried a lock again by the lock's point); anything else is behind.
            sitting = reached == target and task.last_label == seg.label
            if reached >= target and not sitting:
                self.unfollowed.append(f"{seg}: CPU {seg.cpu} was already past it")
                return
        taken = 0
        while self.runnable(seg.cpu):
            value = self._step(task)
            taken += 1
            if seg.steps is not None and taken >= seg.steps:
                break
            if target is not None and label_of(value) == seg.label and task.counts[seg.label] >= target:
                break
        else:
            if target is not None and not sitting:
                reached = task.counts.get(seg.label, 0)
                how = "finished" if task.done else f"waits for {task.blocked_on.name}" if task.blocked_on else "stopped"
                self.unfollowed.append(f"{seg}: CPU {seg.cpu} {how} after reaching {seg.label} "
                                       f"{reached} time{'s' if reached != 1 else ''}")
            elif seg.steps is not None and taken < seg.steps:
                self.unfollowed.append(f"{seg}: CPU {seg.cpu} could run only {taken} step{'s' if taken != 1 else ''}")
        if taken:
            self._record(task, taken)

    def _round_robin(self, every: int) -> None:
        order = sorted(self.tasks)
        i = 0
        while not self.all_done():
            runnable = [c for c in order if self.runnable(c)]
            if not runnable:
                waiting = ", ".join(f"CPU {t.cpu} on {t.blocked_on.name}" for t in self.tasks.values()
                                    if t.blocked_on is not None and not t.done)
                raise Deadlock(f"no CPU can run: {waiting}")
            cpu = next((c for c in order[i:] + order[:i] if c in runnable))
            task = self.tasks[cpu]
            taken = 0
            while taken < every and self.runnable(cpu):
                self._step(task)
                taken += 1
            self._record(task, taken)
            i = (order.index(cpu) + 1) % len(order)

    def _record(self, task: TaskState, taken: int) -> None:
        """Name where a segment stopped: the point it ended on (for a task now waiting on a
        lock, the lock point just before), else its step count."""
        if task.done:
            self.ran.append(Segment(task.cpu))
        elif task.last_label is not None:
            self.ran.append(Segment(task.cpu, label=task.last_label, occurrence=task.counts[task.last_label]))
        else:
            self.ran.append(Segment(task.cpu, steps=taken))


def _merge(segments: list[Segment]) -> list[Segment]:
    """Adjacent segments of one CPU collapse into the last (labels count from the start)."""
    out: list[Segment] = []
    for seg in segments:
        if out and out[-1].cpu == seg.cpu and out[-1].steps is None and seg.steps is None:
            out[-1] = seg
        else:
            out.append(seg)
    return out
