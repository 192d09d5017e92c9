"""What one step of a task touches, for deciding which steps of two CPUs commute.

Components that hold shared state (locks, the machine's memory and protections, the module
list, ftrace's liveness) report each access to a Tracker when one is attached.  A step's
Footprint is the set of tokens it read and wrote; guest code, whose accesses are not
followed, touches everything.  Two steps are dependent when one writes what the other
reads or writes, so the relation over-approximates real conflicts: anything not reported
precisely is reported as everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PAGE_SHIFT = 12


@dataclass(frozen=True)
class Footprint:
    reads: frozenset = frozenset()
    writes: frozenset = frozenset()
    everything: bool = False

    def conflicts(self, other: "Footprint") -> bool:
        if self.everything or other.everything:
            return True
        return bool(self.writes & (other.reads | other.writes) or other.writes & self.reads)

    def __str__(self) -> str:
        if self.everything:
            return "*"
        parts = [f"w:{t}" for t in sorted(map(str, self.writes))] + [f"r:{t}" for t in sorted(map(str, self.reads))]
        return " ".join(parts) or "-"


@dataclass
class Tracker:
    """Accumulates the accesses of the step in progress."""

    reads: set = field(default_factory=set)
    writes: set = field(default_factory=set)
    everything: bool = False
    #: Guest routines whose accesses are known: entry address -> tokens they write.  The
    #: text-write routine is here with none (its targets are reported by emu.textpoke).
    known_code: dict = field(default_factory=dict)

    def guest(self, addr: int) -> None:
        """Guest code at addr is about to run on some CPU."""
        tokens = self.known_code.get(addr)
        if tokens is None:
            self.everything = True
        else:
            for token in tokens:
                self.touch(token)

    def touch(self, token: object, write: bool = True) -> None:
        (self.writes if write else self.reads).add(token)

    def touch_pages(self, kind: str, start: int, end: int, write: bool = True) -> None:
        for page in range(start >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
            self.touch((kind, page), write)

    def touch_everything(self) -> None:
        self.everything = True

    def take(self) -> Footprint:
        """The footprint so far, and start afresh."""
        fp = Footprint(frozenset(self.reads), frozenset(self.writes), self.everything)
        self.reads, self.writes, self.everything = set(), set(), False
        return fp
