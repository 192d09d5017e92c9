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
          writes or executes is seen at least once.  Memory is two tokens a page: ("mem", p)
          for its bytes as data, ("code", p) for running code from it; a store writes both.
          A call site (a record's 5 bytes) is finer still, a token of its own: a text write
          that changes only a site's bytes writes ("site", ip) and the page's data, not its
          code, and code that runs the site reads ("site", ip) (the block hook on every site,
          Tracker.sites, reports it).  So patching kmalloc's call site and running vfs_read
          on the same page commute; running kmalloc does not.  What guest code reaches of the host's
          state goes through host hooks (the tracer's callbacks, the int3 handler); a hook
          reports the tokens it reads and writes (Tracker.hook), and the host state behind
          those tokens is watched: a step after which a watched value differs writes its
          token, whatever code changed it.  So no host code needs to say what it changes.

A page's protection is a token per kind of access, ("prot", kind, p) for kind r, w or x: each
access reads the one that decides whether it faults (a store reads w, running code x), and
a protection change writes the kinds it changes and reads the others (setting a kind to the
value it has is no change, as a compare-and-swap that fails is a read).  So making kernel
text writable for ftrace's update commutes with running that text, not with a store to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PAGE_SHIFT = 12
#: The kinds of access a page's protection allows, by their bits (Unicorn's UC_PROT_*).
PROT_KINDS = (("r", 1), ("w", 2), ("x", 4))
#: A call site: `call __fentry__` or the nop in its place.
SITE_SIZE = 5


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
    #: The call sites whose running is reported (run_site()): ip -> anything.  A text write
    #: within one of them is a site write (text_writes()); any other writes the page's code.
    sites: dict | set = field(default_factory=dict)
    _seen: dict = field(default_factory=dict, repr=False)
    #: Pages whose stores are site writes only, while the text-write routine runs.
    _site_pages: frozenset = field(default_factory=frozenset, repr=False)
    #: One object for each token and each footprint seen: a run's path, pickled back to
    #: the explorer, then holds each once (a run at record granularity has ~500 steps of
    #: ~25 tokens each, but ~260 distinct tokens and ~350 distinct footprints).
    _tokens: dict = field(default_factory=dict, repr=False)
    _footprints: dict = field(default_factory=dict, repr=False)

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

    def touch_pages(self, start: int, end: int, write: bool = True) -> None:
        """Data access to the bytes [start, end) (a host read or write, a protection change)."""
        for page in range(start >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
            self.touch_page(page, write)

    def site_of(self, addr: int, size: int) -> int | None:
        """The watched call site whose bytes hold all of [addr, addr+size), if any."""
        for ip in range(addr, addr - SITE_SIZE, -1):
            if ip in self.sites:
                return ip if addr + size <= ip + SITE_SIZE else None
        return None

    def text_writes(self, writes) -> frozenset:
        """A batch of text writes [(addr, data)] is about to run: each writes its site, or
        its pages' code.  Returns the pages whose stores are all site writes (for
        site_stores())."""
        site_pages, other_pages = set(), set()
        for addr, data in writes:
            ip = self.site_of(addr, len(data))
            pages = range(addr >> PAGE_SHIFT, ((addr + len(data) - 1) >> PAGE_SHIFT) + 1)
            if ip is None:
                other_pages.update(pages)
                self.touch_pages(addr, addr + len(data))
            else:
                site_pages.update(pages)
                self.writes.add(("site", ip))
                self.writes.update(("mem", p) for p in pages)
        return frozenset(site_pages - other_pages)

    def site_stores(self, pages: frozenset) -> None:
        """Guest stores to these pages are site writes (already reported by text_writes())
        until this is called again with none; the caller empties the TLB afterwards, so a
        later store to them is seen afresh."""
        self._site_pages = pages

    def run_site(self, ip: int) -> None:
        """Guest code is about to run the call site at ip."""
        self.reads.add(("site", ip))

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
        """A data access to a page: a store also changes the code on it."""
        if not write:
            self.reads.update((("mem", page), ("prot", "r", page)))
            return
        self.reads.add(("prot", "w", page))
        self.writes.add(("mem", page))
        if page not in self._site_pages:
            self.writes.add(("code", page))

    def fetch_page(self, page: int) -> None:
        """Guest code is run from the page."""
        self.reads.update((("code", page), ("prot", "x", page)))

    def protection(self, start: int, end: int, old: int, new: int) -> None:
        """The protection of the pages of [start, end) changes from old to new (bits of
        PROT_KINDS): each kind whose bit changes is written, the others read."""
        for page in range(start >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
            for kind, bit in PROT_KINDS:
                (self.writes if (old ^ new) & bit else self.reads).add(("prot", kind, page))

    def take(self) -> Footprint:
        """The footprint so far, and start afresh."""
        for token, value_of in self.watched.items():
            value = value_of()
            if self._seen.get(token, value) != value:
                self.writes.add(token)
            self._seen[token] = value
        tokens = self._tokens
        fp = Footprint(frozenset(tokens.setdefault(t, t) for t in self.reads),
                       frozenset(tokens.setdefault(t, t) for t in self.writes), self.everything)
        self.reads, self.writes, self.everything = set(), set(), False
        return self._footprints.setdefault(fp, fp)
