"""dyn_ftrace records and the pages that hold them (the core's first, each module's after)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from .flags import FTRACE_FL_MASK, ftrace_rec_count, record_flag_names

#: sizeof(struct dyn_ftrace) on x86-64 is 16 bytes (ip, flags; empty arch part).
DYN_FTRACE_SIZE = 16
PAGE_SIZE = 4096
ENTRIES_PER_PAGE = PAGE_SIZE // DYN_FTRACE_SIZE


class DynFtrace:
    """One call site: its ip and flags (state bits plus the reference count)."""

    __slots__ = ("ip", "flags")

    def __init__(self, ip: int, flags: int = 0):
        self.ip = ip
        self.flags = flags

    @property
    def refs(self) -> int:
        return ftrace_rec_count(self.flags)

    @property
    def state(self) -> int:
        return self.flags & FTRACE_FL_MASK

    def __repr__(self) -> str:
        return f"<DynFtrace ip={self.ip:#x} flags={record_flag_names(self.state)} refs={self.refs}>"


@dataclass(eq=False)
class FtracePage:
    """struct ftrace_page: a run of records; `order` pages' worth of capacity."""

    records: list[DynFtrace] = field(default_factory=list)
    order: int = 0

    @property
    def capacity(self) -> int:
        return ENTRIES_PER_PAGE << self.order

    @property
    def index(self) -> int:
        return len(self.records)


def allocate_pages(count: int) -> list[FtracePage]:
    """ftrace_allocate_pages(): groups of 2^order pages until count records fit, each group
    as large as needed but leaving no more than one page empty (ftrace_allocate_records)."""
    pages = []
    while count > 0:
        order = (-(-count // ENTRIES_PER_PAGE) - 1).bit_length()  # get_count_order
        if (ENTRIES_PER_PAGE << order) >= count + ENTRIES_PER_PAGE:
            order -= 1
        pages.append(FtracePage(order=order))
        count -= ENTRIES_PER_PAGE << order
    return pages


class RecordTable:
    """The kernel's list of ftrace pages: do_for_each_ftrace_rec walks it in order."""

    def __init__(self) -> None:
        self.pages: list[FtracePage] = []

    def __iter__(self) -> Iterator[DynFtrace]:
        for pg in list(self.pages):
            yield from list(pg.records)

    def __len__(self) -> int:
        return sum(pg.index for pg in self.pages)

    def position(self, rec: DynFtrace) -> int:
        """How many records the walk meets before rec."""
        n = 0
        for pg in self.pages:
            for r in pg.records:
                if r is rec:
                    return n
                n += 1
        raise ValueError(f"{rec!r} is not in the table")

    def lookup(self, ip: int) -> DynFtrace | None:
        """ftrace_location()-style lookup of a record by its exact ip."""
        for pg in self.pages:
            recs = pg.records
            if recs and recs[0].ip <= ip <= recs[-1].ip:
                lo, hi = 0, len(recs)
                while lo < hi:
                    mid = (lo + hi) // 2
                    if recs[mid].ip < ip:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo < len(recs) and recs[lo].ip == ip:
                    return recs[lo]
        return None
