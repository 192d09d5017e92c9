"""The ftrace subsystem's own events (kernel/trace/trace_entries.h, exported by
trace_export.c): their ids (enum trace_type, kernel/trace/trace.h), field layouts and the
`format` text trace_events.c's f_show() prints, the ring buffer's header_page and header_event
(ring_buffer_print_page_header(), ring_buffer_print_entry_header()), and how this machine's
trace entries become those events' bytes.

The trees differ in one layout: v4.8.17 declares funcgraph_entry and funcgraph_exit with
FTRACE_ENTRY_PACKED and packs struct ftrace_graph_ent/ftrace_graph_ret, overrun moved after
func (kernel.has(GRAPH_ENTRIES_PACKED)); v4.5.0 pads them to 8 bytes.  On x86_64: long and
pointers are 8 bytes, char is signed, resource_size_t is 64 bits.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..kernels import GRAPH_ENTRIES_PACKED
from ..tracer import GraphEntry, PrintEntry, TraceEntry
from ..tracers.stacktrace import StackEntry
from .page import BUF_PAGE_HDR_SIZE, BUF_PAGE_SIZE, RINGBUF_TYPE_DATA_TYPE_LEN_MAX, RINGBUF_TYPE_PADDING, \
    RINGBUF_TYPE_TIME_EXTEND

# enum trace_type (kernel/trace/trace.h; the same in v4.5.0 and v4.8.17)
TRACE_FN, TRACE_CTX, TRACE_WAKE, TRACE_STACK, TRACE_PRINT, TRACE_BPRINT = 1, 2, 3, 4, 5, 6
TRACE_MMIO_RW, TRACE_MMIO_MAP, TRACE_BRANCH, TRACE_GRAPH_RET, TRACE_GRAPH_ENT = 7, 8, 9, 10, 11
TRACE_USER_STACK, TRACE_BLK, TRACE_BPUTS = 12, 13, 14


@dataclass(frozen=True)
class Field:
    """One trace_define_field(): the type as the macro spelt it, offset and size by
    offsetof()/sizeof() of the entry struct, and is_signed_type()."""

    type: str
    name: str
    offset: int
    size: int
    signed: bool

    def format_line(self) -> str:
        """f_show()'s line: an array's [len] moves after the name."""
        kind, bracket, dims = self.type.partition("[")
        name = self.name + (bracket + dims if bracket else "")
        return f"\tfield:{kind} {name};\toffset:{self.offset};\tsize:{self.size};\tsigned:{int(self.signed)};\n"


#: __common_field()s of trace_define_common_fields(): struct trace_entry.
COMMON_FIELDS = (Field("unsigned short", "common_type", 0, 2, False),
                 Field("unsigned char", "common_flags", 2, 1, False),
                 Field("unsigned char", "common_preempt_count", 3, 1, False),
                 Field("int", "common_pid", 4, 4, True))


@dataclass(frozen=True)
class FtraceEvent:
    """An FTRACE_ENTRY(): name, id, fields after the common ones, the print format as
    F_printk() stringifies it (with __entry as REC), and whether event_create_dir() gives it
    an `id` file (only an event with a ->reg: function's perf_ftrace_event_register)."""

    name: str
    id: int
    fields: tuple[Field, ...]
    print_fmt: str
    has_id_file: bool = False

    def format(self) -> str:
        """events/ftrace/NAME/format: f_start()/f_next()/f_show() over the header, the common
        fields, the event's fields, the print format."""
        return (f"name: {self.name}\nID: {self.id}\nformat:\n"
                + "".join(f.format_line() for f in COMMON_FIELDS) + "\n"
                + "".join(f.format_line() for f in self.fields)
                + f"\nprint fmt: {self.print_fmt}\n")


def _f(type_: str, name: str, offset: int, size: int, signed: bool = False) -> Field:
    return Field(type_, name, offset, size, signed)


_IP = '"\\t=> (" "%016lx" ")\\n\\t=> (" "%016lx" ")\\n\\t=> (" "%016lx" ")\\n" '
_STACK_FMT = (_IP + _IP + '"\\t=> (" "%016lx" ")\\n\\t=> (" "%016lx" ")\\n", '
              + ", ".join(f"REC->caller[{i}]" for i in range(8)))
_CTX_FIELDS = (_f("unsigned int", "prev_pid", 8, 4), _f("unsigned int", "next_pid", 12, 4),
               _f("unsigned int", "next_cpu", 16, 4), _f("unsigned char", "prev_prio", 20, 1),
               _f("unsigned char", "prev_state", 21, 1), _f("unsigned char", "next_prio", 22, 1),
               _f("unsigned char", "next_state", 23, 1))
_CTX_ARGS = ("REC->prev_pid, REC->prev_prio, REC->prev_state, REC->next_pid, REC->next_prio, "
             "REC->next_state, REC->next_cpu")


def ftrace_events(packed_graph: bool) -> tuple[FtraceEvent, ...]:
    """The events of trace_entries.h in its order, as a tree lays them out."""
    if packed_graph:  # struct ftrace_graph_ret {func, overrun, calltime, rettime, depth} __packed
        ret_fields = (_f("unsigned long", "func", 8, 8), _f("unsigned long long", "calltime", 24, 8),
                      _f("unsigned long long", "rettime", 32, 8), _f("unsigned long", "overrun", 16, 8),
                      _f("int", "depth", 40, 4, True))
    else:  # {func, calltime, rettime, overrun, depth}, padded to 8
        ret_fields = (_f("unsigned long", "func", 8, 8), _f("unsigned long long", "calltime", 16, 8),
                      _f("unsigned long long", "rettime", 24, 8), _f("unsigned long", "overrun", 32, 8),
                      _f("int", "depth", 40, 4, True))
    return (
        FtraceEvent("function", TRACE_FN, (_f("unsigned long", "ip", 8, 8), _f("unsigned long", "parent_ip", 16, 8)),
                    '" %lx <-- %lx", REC->ip, REC->parent_ip', has_id_file=True),
        FtraceEvent("funcgraph_entry", TRACE_GRAPH_ENT,
                    (_f("unsigned long", "func", 8, 8), _f("int", "depth", 16, 4, True)),
                    '"--> %lx (%d)", REC->func, REC->depth'),
        FtraceEvent("funcgraph_exit", TRACE_GRAPH_RET, ret_fields,
                    '"<-- %lx (%d) (start: %llx  end: %llx) over: %d", REC->func, REC->depth, REC->calltime, '
                    'REC->rettime, REC->depth'),
        FtraceEvent("context_switch", TRACE_CTX, _CTX_FIELDS, '"%u:%u:%u  ==> %u:%u:%u [%03u]", ' + _CTX_ARGS),
        FtraceEvent("wakeup", TRACE_WAKE, _CTX_FIELDS, '"%u:%u:%u  ==+ %u:%u:%u [%03u]", ' + _CTX_ARGS),
        FtraceEvent("kernel_stack", TRACE_STACK, (_f("int", "size", 8, 4, True), _f("unsigned long", "caller", 16, 0)),
                    _STACK_FMT),
        FtraceEvent("user_stack", TRACE_USER_STACK,
                    (_f("unsigned int", "tgid", 8, 4), _f("unsigned long[8]", "caller", 16, 64)), _STACK_FMT),
        FtraceEvent("bprint", TRACE_BPRINT, (_f("unsigned long", "ip", 8, 8), _f("const char *", "fmt", 16, 8),
                                             _f("u32", "buf", 24, 0)),
                    '"%ps: %s", (void *)REC->ip, REC->fmt'),
        FtraceEvent("print", TRACE_PRINT, (_f("unsigned long", "ip", 8, 8), _f("char", "buf", 16, 0, True)),
                    '"%ps: %s", (void *)REC->ip, REC->buf'),
        FtraceEvent("bputs", TRACE_BPUTS, (_f("unsigned long", "ip", 8, 8), _f("const char *", "str", 16, 8)),
                    '"%ps: %s", (void *)REC->ip, REC->str'),
        FtraceEvent("mmiotrace_rw", TRACE_MMIO_RW,
                    (_f("resource_size_t", "phys", 8, 8), _f("unsigned long", "value", 16, 8),
                     _f("unsigned long", "pc", 24, 8), _f("int", "map_id", 32, 4, True),
                     _f("unsigned char", "opcode", 36, 1), _f("unsigned char", "width", 37, 1)),
                    '"%lx %lx %lx %d %x %x", (unsigned long)REC->phys, REC->value, REC->pc, REC->map_id, '
                    'REC->opcode, REC->width'),
        FtraceEvent("mmiotrace_map", TRACE_MMIO_MAP,
                    (_f("resource_size_t", "phys", 8, 8), _f("unsigned long", "virt", 16, 8),
                     _f("unsigned long", "len", 24, 8), _f("int", "map_id", 32, 4, True),
                     _f("unsigned char", "opcode", 36, 1)),
                    '"%lx %lx %lx %d %x", (unsigned long)REC->phys, REC->virt, REC->len, REC->map_id, REC->opcode'),
        FtraceEvent("branch", TRACE_BRANCH,
                    (_f("unsigned int", "line", 8, 4), _f("char[30+1]", "func", 12, 31, True),
                     _f("char[20+1]", "file", 43, 21, True), _f("char", "correct", 64, 1, True)),
                    '"%u:%s:%s (%u)", REC->line, REC->func, REC->file, REC->correct'),
    )


def header_page() -> str:
    """events/header_page: ring_buffer_print_page_header() (struct buffer_data_page on
    x86_64; `overwrite` is commit's first byte, as the kernel prints it)."""
    return (f"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            f"\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
            f"\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            f"\tfield: char data;\toffset:{BUF_PAGE_HDR_SIZE};\tsize:{BUF_PAGE_SIZE};\tsigned:1;\n")


def header_event() -> str:
    """events/header_event: ring_buffer_print_entry_header()."""
    return ("# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n"
            "\tarray       :   32 bits\n\n"
            f"\tpadding     : type == {RINGBUF_TYPE_PADDING}\n\ttime_extend : type == {RINGBUF_TYPE_TIME_EXTEND}\n"
            f"\tdata max type_len  == {RINGBUF_TYPE_DATA_TYPE_LEN_MAX}\n")


_COMMON = struct.Struct("<HBBi")  # struct trace_entry
_FN = struct.Struct("<HBBiQQ")
_GRAPH_ENT = {False: struct.Struct("<HBBiQi4x"), True: struct.Struct("<HBBiQi")}
_GRAPH_RET_45 = struct.Struct("<HBBiQQQQi4x")  # func, calltime, rettime, overrun, depth
_GRAPH_RET_48 = struct.Struct("<HBBiQQQQi")  # func, overrun, calltime, rettime, depth (packed)
_U64 = (1 << 64) - 1


class EntryEncoder:
    """A trace entry of this machine as the bytes its ftrace event has in the ring buffer.
    common_flags and common_preempt_count are 0: no task here is traced with interrupts off,
    in an interrupt or with preemption disabled (the text trace's "...." says the same)."""

    def __init__(self, packed_graph: bool):
        self.packed = packed_graph
        self.graph_ent = _GRAPH_ENT[packed_graph]

    @classmethod
    def for_kernel(cls, tree) -> "EntryEncoder":
        return cls(tree.has(GRAPH_ENTRIES_PACKED))

    def encode(self, e) -> bytes:
        pid = e.pid
        if isinstance(e, TraceEntry):
            return _FN.pack(TRACE_FN, 0, 0, pid, e.ip, e.parent_ip)
        if isinstance(e, GraphEntry):
            if not e.exit:  # trace_graph_entry(): __trace_graph_entry()
                return self.graph_ent.pack(TRACE_GRAPH_ENT, 0, 0, pid, e.func, e.depth)
            if self.packed:
                return _GRAPH_RET_48.pack(TRACE_GRAPH_RET, 0, 0, pid, e.func, e.overrun & _U64, e.calltime,
                                          e.rettime, e.depth)
            return _GRAPH_RET_45.pack(TRACE_GRAPH_RET, 0, 0, pid, e.func, e.calltime, e.rettime,
                                      e.overrun & _U64, e.depth)
        if isinstance(e, PrintEntry):
            # tracing_mark_write(): sizeof(struct print_entry) + cnt + 2, the text with its
            # newline and a NUL
            return _COMMON.pack(TRACE_PRINT, 0, 0, pid) + struct.pack("<Q", e.ip) + e.text.encode() + b"\0\0"
        if isinstance(e, StackEntry):
            # __ftrace_trace_stack(): size, then the callers (an int padded to the array)
            return (_COMMON.pack(TRACE_STACK, 0, 0, pid) + struct.pack("<i4x", len(e.callers))
                    + b"".join(struct.pack("<Q", c) for c in e.callers))
        raise TypeError(f"no ftrace event for {type(e).__name__}")
