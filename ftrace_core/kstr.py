"""The kernel's number parsers, as the files and the command line use them: kstrtoul()
(lib/kstrtox.c) base 10 as kstrtoul_from_user() calls it and base 0, simple_strtoul()
(lib/vsprintf.c) and memparse() (lib/cmdline.c).  Base 0 is _parse_integer_fixup_radix():
"0x" before a hex digit is hex, another leading 0 octal, else decimal."""

from __future__ import annotations

import errno

from .errors import TracefsError

ULONG_MAX = (1 << 64) - 1
_HEX = "0123456789abcdefABCDEF"


def simple_strtoul(text: str) -> tuple[int, str]:
    """simple_strtoul(p, &end, 0): the base-0 number at the start of text (0 if none) and
    what follows it."""
    base, digits = 10, "0123456789"
    if text[:2].lower() == "0x" and len(text) > 2 and text[2] in _HEX:
        base, digits, text = 16, _HEX, text[2:]
    elif text.startswith("0"):
        base, digits = 8, "01234567"
    end = 0
    while end < len(text) and text[end] in digits:
        end += 1
    return int(text[:end], base) if end else 0, text[end:]


def kstrtoul_base0(text: str) -> tuple[int, int]:
    """kstrtoul(s, 0, &val): one '+' allowed, then a base-0 number and nothing else;
    (value, 0), or (0, -EINVAL), or (0, -ERANGE) past ULONG_MAX."""
    if text.startswith("+"):
        text = text[1:]
    if not text[:1].isdigit():
        return 0, -errno.EINVAL
    value, rest = simple_strtoul(text)
    if rest:
        return 0, -errno.EINVAL
    return (value, 0) if value <= ULONG_MAX else (0, -errno.ERANGE)


def kstrtoul(name: str, data: bytes) -> int:
    """kstrtoul_from_user(buf, count, 10): a decimal unsigned long, one trailing newline
    allowed; TracefsError -EINVAL naming the file otherwise, -ERANGE past ULONG_MAX."""
    text = data.decode("latin-1")
    if text.endswith("\n"):
        text = text[:-1]
    if text.startswith("+"):
        text = text[1:]
    if not text or not text.isascii() or not text.isdigit():
        raise TracefsError(f"{name}: {data!r} is not a decimal number", errno.EINVAL)
    value = int(text)
    if value > ULONG_MAX:
        raise TracefsError(f"{name}: {text} is out of range", errno.ERANGE)
    return value


def memparse(text: str) -> int:
    """memparse(): a base-0 number, then an optional K/M/G/T/P/E (either case)."""
    value, rest = simple_strtoul(text)
    shift = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}.get(rest[:1].lower(), 0)
    return (value << shift) & ULONG_MAX
