"""trace_get_user() (kernel/trace/trace.c, the same from v4.4 to v4.8.17): the tokenizer
behind the filter files.  One call takes at most one token; a token that a write ends in the
middle of is continued by the next write; a token longer than the parser's buffer is -EINVAL.
"""

from __future__ import annotations

import errno

#: FTRACE_BUFF_MAX: KSYM_SYMBOL_LEN (19 + 127 + 38 + 55 + 1 on 64-bit) + 4, "room for wildcards".
FTRACE_BUFF_MAX = 244


def _isspace(byte: int) -> bool:
    return byte in b" \t\n\v\f\r"


class TraceParser:
    """struct trace_parser: the token being read, and whether it continues in the next write."""

    def __init__(self, size: int = FTRACE_BUFF_MAX):
        self.size = size
        self.buffer = bytearray()
        self.cont = False
        self.pos = 0  # the file position (*ppos): the first write of an open starts afresh

    @property
    def loaded(self) -> bool:
        """trace_parser_loaded(): a token has been read."""
        return len(self.buffer) > 0

    def clear(self) -> None:
        """trace_parser_clear()."""
        self.buffer.clear()
        self.cont = False

    @property
    def token(self) -> str:
        return self.buffer.decode("latin-1")

    def get_user(self, data: bytes) -> int:
        """trace_get_user(): read at most one token from data; how many bytes were taken, or
        -errno.  When the bytes end inside a token, `cont` says it goes on in the next write."""
        if not data:
            return -errno.EFAULT  # get_user() on an empty buffer
        if self.pos == 0:
            self.clear()
        i = 0
        ch = data[i]
        i += 1
        if not self.cont:
            while i < len(data) and _isspace(ch):
                ch = data[i]
                i += 1
            if _isspace(ch):  # only spaces were written
                self.pos += i
                return i
            self.buffer.clear()
        while i < len(data) and not _isspace(ch):
            if len(self.buffer) < self.size - 1:
                self.buffer.append(ch)
            else:
                return -errno.EINVAL
            ch = data[i]
            i += 1
        if _isspace(ch):
            self.cont = False
        elif len(self.buffer) < self.size - 1:
            self.cont = True
            self.buffer.append(ch)
        else:
            return -errno.EINVAL
        self.pos += i
        return i
