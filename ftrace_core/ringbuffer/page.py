"""The kernel ring buffer's binary pages (kernel/trace/ring_buffer.c, include/linux/ring_buffer.h;
the page and event encoding is the same in v4.5.0 and v4.8.17): what trace_pipe_raw hands out
and trace.dat stores, written and read back.

A page is `struct buffer_data_page`: a u64 time stamp (the time of its first event), a local_t
commit (the bytes of events that follow; on x86_64 a long, 8 bytes) and the data.  Each event
starts with a 32-bit header (type_len:5, time_delta:27): data up to 112 bytes gives its length
in 4-byte words in type_len; longer data has type_len 0 and its length in the next word.  A
time delta too large for 27 bits is carried by a TIME_EXTEND event in front of the data event;
a page whose next event does not fit ends in PADDING.  When the reader lost events, the commit
field carries RB_MISSED_EVENTS and, when the page has room, the count after the data
(RB_MISSED_STORED).

x86_64 has no CONFIG_HAVE_64BIT_ALIGNED_ACCESS: events are 4-byte aligned
(RB_FORCE_8BYTE_ALIGNMENT 0).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ..errors import FtraceError

PAGE_SIZE = 4096
#: offsetof(struct buffer_data_page, data): u64 time_stamp + local_t commit (x86_64).
BUF_PAGE_HDR_SIZE = 16
BUF_PAGE_SIZE = PAGE_SIZE - BUF_PAGE_HDR_SIZE
RB_EVNT_HDR_SIZE = 4
RB_ALIGNMENT = 4
RINGBUF_TYPE_DATA_TYPE_LEN_MAX = 28
RINGBUF_TYPE_PADDING = 29
RINGBUF_TYPE_TIME_EXTEND = 30
RINGBUF_TYPE_TIME_STAMP = 31
RB_MAX_SMALL_DATA = RB_ALIGNMENT * RINGBUF_TYPE_DATA_TYPE_LEN_MAX
RB_LEN_TIME_EXTEND = 8
RB_LEN_TIME_STAMP = 16
RB_EVNT_MIN_SIZE = 8
TS_SHIFT = 27
TS_MASK = (1 << TS_SHIFT) - 1
#: Flags in the commit field of a page handed to a reader (ring_buffer_read_page()).
RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
#: The data bytes one event may have: BUF_MAX_DATA_SIZE (a page less two words).
BUF_MAX_DATA_SIZE = BUF_PAGE_SIZE - 2 * 4

_PAGE_HEAD = struct.Struct("<QQ")
_U32 = struct.Struct("<I")


class PageFormatError(FtraceError):
    """Bytes that are not a ring-buffer page (a short page, a commit past the page end, an
    event running off its page)."""


def rb_calculate_event_length(length: int) -> int:
    """rb_calculate_event_length(): the bytes an event of `length` data bytes takes, header
    included, 4-aligned; 12 becomes 16, so that a discarded event can always hold a TIME_EXTEND
    and a padding event."""
    if length > BUF_MAX_DATA_SIZE:
        raise PageFormatError(f"an event of {length} bytes does not fit in a ring-buffer page "
                              f"(at most {BUF_MAX_DATA_SIZE})")
    length = max(length, 1)
    if length > RB_MAX_SMALL_DATA:
        length += 4  # array[0] holds the length
    length += RB_EVNT_HDR_SIZE
    length = (length + RB_ALIGNMENT - 1) & ~(RB_ALIGNMENT - 1)
    if length == RB_LEN_TIME_EXTEND + RB_ALIGNMENT:
        length += RB_ALIGNMENT
    return length


def _header(type_len: int, delta: int) -> int:
    return (delta & TS_MASK) << 5 | type_len


@dataclass
class BufferPage:
    """A writer's page (struct buffer_page with its buffer_data_page): the data written so
    far, the time stamp of its first event, and real_end, where the events stopped when the
    rest of the page became padding (rb_reset_tail(); 0 when the page filled exactly)."""

    time_stamp: int = 0
    data: bytearray = field(default_factory=bytearray)
    real_end: int = 0
    entries: int = 0

    @property
    def write(self) -> int:
        return len(self.data)


class PageWriter:
    """One CPU's writer (rb_reserve_next_event(), __rb_reserve_next(), rb_update_event(),
    rb_move_tail() and rb_reset_tail()): events go onto the tail page, each with its time
    delta from the previous one; write_stamp is the time of the last event written."""

    def __init__(self, write_stamp: int = 0):
        self.pages: list[BufferPage] = [BufferPage()]
        self.write_stamp = write_stamp

    def write(self, ts: int, payload: bytes) -> None:
        """ring_buffer_lock_reserve() + commit of one event of payload bytes at time ts."""
        length = rb_calculate_event_length(len(payload))
        delta = ts - self.write_stamp if ts >= self.write_stamp else 0
        add_timestamp = delta > TS_MASK  # test_time_stamp(): rb_handle_timestamp()
        if add_timestamp:
            length += RB_LEN_TIME_EXTEND
        page = self.pages[-1]
        tail = page.write
        if tail + length > BUF_PAGE_SIZE:  # rb_move_tail(): pad this page, go on to a new one
            self._reset_tail(page, tail)
            page = BufferPage()
            self.pages.append(page)
            tail = 0
        if tail == 0:  # the first event of a page has the page's time stamp
            delta = 0
            page.time_stamp = ts
        out = page.data
        advance = delta
        if add_timestamp:  # rb_add_time_stamp(): the delta rides in a TIME_EXTEND first
            out += _U32.pack(_header(RINGBUF_TYPE_TIME_EXTEND, delta)) + _U32.pack(delta >> TS_SHIFT)
            length -= RB_LEN_TIME_EXTEND
            delta = 0
        size = length - RB_EVNT_HDR_SIZE
        if size > RB_MAX_SMALL_DATA:
            out += _U32.pack(_header(0, delta)) + _U32.pack(size)  # array[0] counts itself
            size -= 4
        else:
            out += _U32.pack(_header(size // RB_ALIGNMENT, delta))
        out += payload + bytes(size - len(payload))
        page.entries += 1
        # rb_update_write_stamp(): a new page restarts from its time stamp
        self.write_stamp = ts if tail == 0 else self.write_stamp + advance

    @staticmethod
    def _reset_tail(page: BufferPage, tail: int) -> None:
        """rb_reset_tail(): the rest of the page is padding; real_end keeps where the events
        stopped (the reader hands out only that much)."""
        if tail >= BUF_PAGE_SIZE:
            page.real_end = 0
            return
        page.real_end = tail
        room = BUF_PAGE_SIZE - tail
        if room < RB_EVNT_MIN_SIZE:  # no room for a padding event: a null one (time delta 0)
            page.data += _U32.pack(_header(RINGBUF_TYPE_PADDING, 0)) + bytes(room - 4)
            return
        # a discarded event spanning the rest: time delta 1, its length in array[0]
        page.data += _U32.pack(_header(RINGBUF_TYPE_PADDING, 1)) + _U32.pack(room - RB_EVNT_HDR_SIZE)
        page.data += bytes(room - 8)


def read_page(page: BufferPage, missed: int = 0) -> bytes:
    """ring_buffer_read_page() (full=0) of one writer page: the PAGE_SIZE bytes a reader
    gets.  A page the writer left (padded) is swapped out whole and its commit is real_end,
    so the padding is not handed out; the page the writer is on is copied event by event up
    to what was written.  Lost events set RB_MISSED_EVENTS in commit, and their count follows
    the data when it fits (RB_MISSED_STORED).  The rest of the page is zeroed."""
    commit = page.real_end or page.write
    data = bytes(page.data[:commit])
    flags = 0
    if missed:
        if BUF_PAGE_SIZE - commit >= 8:
            data += struct.pack("<Q", missed)
            flags |= RB_MISSED_STORED
        flags |= RB_MISSED_EVENTS
    return _PAGE_HEAD.pack(page.time_stamp, commit | flags) + data + bytes(BUF_PAGE_SIZE - len(data))


def encode_pages(events: Iterable[tuple[int, bytes]], missed: int = 0, write_stamp: int = 0,
                 max_pages: int | None = None) -> tuple[list[bytes], int]:
    """Events (time, payload) of one CPU, oldest first, as the pages a reader takes out of
    the ring buffer (the lost-event count on the first), and how many events they hold.
    With max_pages, writing stops once that many pages are complete (the rest stays)."""
    writer = PageWriter(write_stamp)
    taken = 0
    for ts, payload in events:
        writer.write(ts, payload)
        if max_pages is not None and len(writer.pages) > max_pages:
            writer.pages.pop()  # this event opened one page too many: it stays for later
            break
        taken += 1
    if not writer.pages[-1].entries:
        writer.pages.pop()
    pages = [read_page(page, missed if i == 0 else 0) for i, page in enumerate(writer.pages)]
    return pages, taken


@dataclass(frozen=True)
class RawEvent:
    """An event read from a page: its time (the page's time stamp plus the deltas), its
    type_len and its data (the trace entry)."""

    ts: int
    type_len: int
    data: bytes


@dataclass(frozen=True)
class DecodedPage:
    time_stamp: int
    commit: int  # bytes of events (flags removed)
    missed: int  # 0: none lost; -1: lost, count not stored; else the count
    events: tuple[RawEvent, ...]
    padding: int  # padding and discarded events met


def decode_page(raw: bytes, long_size: int = 8) -> DecodedPage:
    """A page as a reader of the format (trace-cmd's kbuffer) takes it apart: the events up
    to commit, TIME_EXTENDs folded into the time, padding skipped; PageFormatError for a page
    that cannot be one."""
    head = 8 + long_size
    if len(raw) < head:
        raise PageFormatError(f"a ring-buffer page needs at least {head} bytes, got {len(raw)}")
    time_stamp = struct.unpack_from("<Q", raw, 0)[0]
    commit_field = int.from_bytes(raw[8:head], "little")
    commit = commit_field & ~(RB_MISSED_EVENTS | RB_MISSED_STORED) & ((1 << 64) - 1)
    if head + commit > len(raw):
        raise PageFormatError(f"page commit {commit} runs past the page ({len(raw) - head} data bytes)")
    missed = 0
    if commit_field & RB_MISSED_EVENTS:
        missed = -1
        if commit_field & RB_MISSED_STORED:
            missed = struct.unpack_from("<Q", raw, head + commit)[0]
    events: list[RawEvent] = []
    ts, pos, end, padding = time_stamp, head, head + commit, 0
    while pos < end:
        if pos + 4 > end:
            raise PageFormatError(f"event header at {pos - head} runs past commit {commit}")
        word = _U32.unpack_from(raw, pos)[0]
        type_len, delta = word & 0x1F, word >> 5
        if type_len == RINGBUF_TYPE_PADDING:
            padding += 1
            if delta == 0:  # a null padding event: the rest of the page
                break
            # a discarded event: skipped, its delta too (rb_update_read_stamp())
            pos += RB_EVNT_HDR_SIZE + _U32.unpack_from(raw, pos + 4)[0]
            continue
        if type_len == RINGBUF_TYPE_TIME_EXTEND:
            ts += (_U32.unpack_from(raw, pos + 4)[0] << TS_SHIFT) + delta
            pos += RB_LEN_TIME_EXTEND
            continue
        if type_len == RINGBUF_TYPE_TIME_STAMP:
            pos += RB_LEN_TIME_STAMP
            continue
        ts += delta
        if type_len == 0:
            length = _U32.unpack_from(raw, pos + 4)[0] - 4
            start = pos + 8
        else:
            length = type_len * RB_ALIGNMENT
            start = pos + 4
        if start + length > end:
            raise PageFormatError(f"event at {pos - head} ({length} bytes) runs past commit {commit}")
        events.append(RawEvent(ts, type_len, raw[start:start + length]))
        pos = start + length
    return DecodedPage(time_stamp, commit, missed, tuple(events), padding)


def decode_pages(raw: bytes, page_size: int = PAGE_SIZE) -> Iterator[DecodedPage]:
    """Consecutive pages, as trace_pipe_raw reads or a trace.dat CPU section hold them."""
    if len(raw) % page_size:
        raise PageFormatError(f"{len(raw)} bytes is not a whole number of {page_size}-byte pages")
    for off in range(0, len(raw), page_size):
        yield decode_page(raw[off:off + page_size])
