"""The ring buffer's page encoding (ftrace_core.ringbuffer.page, after kernel/trace/ring_buffer.c):
events written onto pages and read back as trace-cmd's kbuffer reads them."""

from __future__ import annotations

import struct

import pytest

from ftrace_core.ringbuffer.events import EntryEncoder, ftrace_events, header_event, header_page
from ftrace_core.ringbuffer.page import (
    BUF_PAGE_SIZE, PAGE_SIZE, RB_MISSED_EVENTS, RB_MISSED_STORED, RINGBUF_TYPE_PADDING, RINGBUF_TYPE_TIME_EXTEND,
    TS_MASK, PageFormatError, PageWriter, decode_page, decode_pages, encode_pages, rb_calculate_event_length,
    read_page,
)
from ftrace_core.tracer import GraphEntry, TraceEntry

FN = 24  # struct ftrace_entry's bytes


def _events(times, size=FN):
    return [(ts, bytes([i % 251]) * size) for i, ts in enumerate(times)]


def _decoded(pages):
    return [(e.ts, e.data) for page in decode_pages(b"".join(pages)) for e in page.events]


def test_event_lengths_follow_rb_calculate_event_length():
    assert rb_calculate_event_length(24) == 28  # a function event: header + 24, type_len 6
    assert rb_calculate_event_length(0) == 8  # zero becomes one byte, aligned
    assert rb_calculate_event_length(8) == 16  # 12 would not leave room for padding: 16
    assert rb_calculate_event_length(112) == 116  # the largest with its length in type_len
    assert rb_calculate_event_length(113) == 124  # then array[0] holds it
    with pytest.raises(PageFormatError, match="does not fit"):
        rb_calculate_event_length(BUF_PAGE_SIZE)


def test_small_and_large_events_round_trip_with_their_times():
    events = [(100, b"a" * 24), (150, b"b" * 112), (151, b"c" * 200), (9000, b"d" * 5)]
    pages, taken = encode_pages(events)
    assert taken == 4 and len(pages) == 1 and len(pages[0]) == PAGE_SIZE
    page = decode_page(pages[0])
    assert page.time_stamp == 100 and page.missed == 0
    assert [(e.ts, e.data[:len(d)]) for e, (_, d) in zip(page.events, events)] == events
    # the first event has the page's time; the header of the 200-byte event has type_len 0
    head = pages[0][16:20]
    assert struct.unpack("<I", head)[0] == 24 // 4  # type_len 6, delta 0
    assert [e.type_len for e in page.events] == [6, 28, 0, 3]
    assert page.commit == 28 + 116 + 208 + 16  # the last: 5 bytes + header -> 12, which becomes 16


def test_a_gap_longer_than_27_bits_rides_in_a_time_extend():
    gap = TS_MASK + 12345
    pages, _ = encode_pages([(10, b"x" * 24), (10 + gap, b"y" * 24), (10 + gap + 5, b"z" * 24)])
    raw = pages[0]
    second = struct.unpack_from("<II", raw, 16 + 28)
    assert second[0] & 0x1F == RINGBUF_TYPE_TIME_EXTEND
    assert (second[1] << 27) + (second[0] >> 5) == gap
    assert [e.ts for e in decode_page(raw).events] == [10, 10 + gap, 10 + gap + 5]


def test_a_page_that_cannot_take_the_next_event_ends_in_padding():
    """rb_reset_tail(): the writer's page ends in a padding event; the page a reader gets
    stops at real_end (the padding stays behind), and the next page starts with delta 0."""
    events = _events(range(0, 200 * 10, 10))
    writer = PageWriter()
    for ts, payload in events:
        writer.write(ts, payload)
    first = writer.pages[0]
    per_page = BUF_PAGE_SIZE // 28
    assert first.entries == per_page and first.real_end == per_page * 28 and first.write == BUF_PAGE_SIZE
    pad = struct.unpack_from("<II", first.data, first.real_end)
    assert pad[0] & 0x1F == RINGBUF_TYPE_PADDING and pad[0] >> 5 == 1
    assert pad[1] == BUF_PAGE_SIZE - first.real_end - 4
    assert writer.pages[1].time_stamp == events[per_page][0]
    # a decoder of the writer's own page skips the padding
    raw_writer_page = struct.pack("<QQ", first.time_stamp, first.write) + bytes(first.data)
    assert decode_page(raw_writer_page).padding == 1
    assert len(decode_page(raw_writer_page).events) == per_page
    pages, taken = encode_pages(events)
    assert taken == 200 and len(pages) == 2
    assert decode_page(pages[0]).commit == first.real_end
    assert _decoded(pages) == [(ts, p) for ts, p in events]


def test_a_gap_at_a_page_start_keeps_a_zero_time_extend():
    """__rb_reserve_next(): the first event of a page has delta 0, but a time extend asked
    for by a long gap is still written (with 0)."""
    per_page = BUF_PAGE_SIZE // 28
    times = list(range(per_page)) + [per_page + TS_MASK * 3]
    pages, _ = encode_pages(_events(times))
    second = pages[1]
    assert struct.unpack_from("<I", second, 16)[0] == RINGBUF_TYPE_TIME_EXTEND
    assert struct.unpack_from("<Q", second, 0)[0] == times[-1]
    assert [e.ts for e in decode_page(second).events] == [times[-1]]


def test_null_padding_when_the_rest_is_too_small_for_a_padding_event():
    writer = PageWriter()
    payload = b"q" * (BUF_PAGE_SIZE - 4 - 4 - 4)  # leaves 4 bytes: too few for a padding event
    writer.write(1, payload)
    writer.write(2, b"r" * 24)
    first = writer.pages[0]
    assert first.real_end == BUF_PAGE_SIZE - 4
    assert struct.unpack_from("<I", first.data, first.real_end)[0] == RINGBUF_TYPE_PADDING  # time delta 0


def test_lost_events_flag_the_first_page_with_their_count():
    pages, _ = encode_pages(_events([5, 6]), missed=17)
    commit = struct.unpack_from("<Q", pages[0], 8)[0]
    assert commit & RB_MISSED_EVENTS and commit & RB_MISSED_STORED
    assert decode_page(pages[0]).missed == 17
    # a full page has no room for the count: only the flag
    full = PageWriter()
    full.write(1, b"f" * (BUF_PAGE_SIZE - 8))
    raw = read_page(full.pages[0], missed=3)
    assert decode_page(raw).missed == -1
    assert struct.unpack_from("<Q", raw, 8)[0] == BUF_PAGE_SIZE | RB_MISSED_EVENTS


def test_max_pages_stops_at_a_page_boundary():
    events = _events(range(400))
    pages, taken = encode_pages(events, max_pages=1)
    assert len(pages) == 1 and taken == BUF_PAGE_SIZE // 28
    rest, more = encode_pages(events[taken:], max_pages=1)
    assert _decoded(pages + rest) == events[:taken + more]
    assert encode_pages([]) == ([], 0)


def test_bad_pages_are_refused_with_a_reason():
    with pytest.raises(PageFormatError, match="at least 16"):
        decode_page(b"\0" * 8)
    with pytest.raises(PageFormatError, match="runs past the page"):
        decode_page(struct.pack("<QQ", 0, 5000) + bytes(BUF_PAGE_SIZE))
    bad = bytearray(struct.pack("<QQ", 0, 8) + bytes(BUF_PAGE_SIZE))
    struct.pack_into("<I", bad, 16, 20)  # type_len 20: 80 bytes of data, past commit 8
    with pytest.raises(PageFormatError, match="runs past commit"):
        decode_page(bytes(bad))
    with pytest.raises(PageFormatError, match="whole number"):
        list(decode_pages(b"\0" * 100))


@pytest.mark.parametrize("packed", [False, True])
def test_entries_encode_at_the_offsets_their_format_files_give(packed):
    """Each event's bytes put every field where events/ftrace/NAME/format says (the v4.5
    and v4.8.17 layouts of funcgraph_exit differ)."""
    events = {e.name: e for e in ftrace_events(packed)}
    enc = EntryEncoder(packed)
    fn = enc.encode(TraceEntry(1, 0, "sh", 42, 0xFFFFFFFF81001000, 0xFFFFFFFF81002000))
    ret = enc.encode(GraphEntry(9, 0, "sh", 42, 0xFFFFFFFF81003000, 0xFFFFFFFF81004000, 3, True, 100, 250, 7))
    ent = enc.encode(GraphEntry(9, 0, "sh", 42, 0xFFFFFFFF81003000, 0xFFFFFFFF81004000, 3, False))

    def field(event, raw, name):
        f = next(f for f in events[event].fields if f.name == name)
        return int.from_bytes(raw[f.offset:f.offset + f.size], "little", signed=f.signed)

    assert struct.unpack_from("<HBBi", fn) == (1, 0, 0, 42)
    assert field("function", fn, "ip") == 0xFFFFFFFF81001000 and field("function", fn, "parent_ip") == 0xFFFFFFFF81002000
    assert [field("funcgraph_exit", ret, n) for n in ("func", "calltime", "rettime", "overrun", "depth")] == \
        [0xFFFFFFFF81003000, 100, 250, 7, 3]
    assert field("funcgraph_entry", ent, "depth") == 3 and struct.unpack_from("<H", ent)[0] == 11
    assert (len(ent), len(ret)) == ((20, 44) if packed else (24, 48))
    assert "\tfield:unsigned long overrun;\toffset:%d;" % (16 if packed else 32) in events["funcgraph_exit"].format()


def test_header_files_describe_this_page_layout():
    assert "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n" in header_page()
    assert f"\tfield: char data;\toffset:16;\tsize:{BUF_PAGE_SIZE};\tsigned:1;\n" in header_page()
    assert "\tpadding     : type == 29\n\ttime_extend : type == 30\n\tdata max type_len  == 28\n" in header_event()
    function = next(e for e in ftrace_events(False) if e.name == "function").format()
    assert function.startswith("name: function\nID: 1\nformat:\n\tfield:unsigned short common_type;\toffset:0;")
    assert function.endswith('\nprint fmt: " %lx <-- %lx", REC->ip, REC->parent_ip\n')
