"""What one step of a task touches, for deciding which steps of two CPUs commute.

Components that hold shared state (locks, the machine's memory and protections, the module
list, ftrace's liveness) report each access to a Tracker when one is attached.  A step's
Footprint is the set of tokens it read and wrote.  Two steps are dependent when one writes
what the other reads or writes, so the relation over-approximates real conflicts: anything
not reported precisely is reported as everything.

Guest code is followed in one of two ways:
  coarse  it touches everything (the relation the explorer began with, kept as the oracle);
  page    its accesses are the pages it touched, by kind: the machine empties the TLB when
          a step begins and reports each miss (emu.machine), so every page a step reads,
          writes or executes is seen at least once.  What guest code reaches of the host's
          state goes through host hooks (the tracer's callbacks, the int3 handler); a hook
          reports the tokens it reads and writes (Tracker.hook), and the host state behind
          those tokens is watched: a step after which a watched value differs writes its
          token, whatever code changed it.  So no host code needs to say what it changes.
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
    #: Page-precise guest code (see the module's docstring): the machine reports its pages.
    precise: bool = False
    #: Host state read by hooks: token -> a function giving that state's value now.  take()
    #: compares each value with the one it saw last and counts a change as a write.
    watched: dict = field(default_factory=dict)
    _seen: dict = field(default_factory=dict, repr=False)

    def guest(self, addr: int) -> None:
        """Guest code at addr is about to run on some CPU."""
        tokens = self.known_code.get(addr)
        if tokens is not None:
            for token in tokens:
                self.touch(token)
        elif not self.precise:
            self.everything = True

    def hook(self, reads: tuple = (), writes: tuple = ()) -> None:
        """A host hook ran inside guest code, reading and writing these tokens."""
        self.reads.update(reads)
        self.writes.update(writes)

    def touch(self, token: object, write: bool = True) -> None:
        (self.writes if write else self.reads).add(token)

    def touch_pages(self, kind: str, start: int, end: int, write: bool = True) -> None:
        for page in range(start >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
            self.touch((kind, page), write)

    def touch_everything(self) -> None:
        self.everything = True

    def begin(self) -> None:
        """A step begins: start afresh.  The watched values are the ones the last take() saw
        (nothing runs between two steps); only where none has been seen yet, in this process
        or the one it was forked from, are they read now, as what the step starts from."""
        self.reads, self.writes, self.everything = set(), set(), False
        if not self._seen:
            for token, value_of in self.watched.items():
                self._seen[token] = value_of()

    def touch_page(self, page: int, write: bool) -> None:
        (self.writes if write else self.reads).add(("mem", page))

    def take(self) -> Footprint:
        """The footprint so far, and start afresh."""
        for token, value_of in self.watched.items():
            value = value_of()
            if self._seen.get(token, value) != value:
                self.writes.add(token)
            self._seen[token] = value
        fp = Footprint(frozenset(self.reads), frozenset(self.writes), self.everything)
        self.reads, self.writes, self.everything = set(), set(), False
        return fp
