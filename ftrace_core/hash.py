"""ftrace hashes (sets of ips) and the kernel's filter-string matching."""

from __future__ import annotations

import enum
from typing import Iterable


class FtraceHash:
    """struct ftrace_hash: the set of ips an ops' filter or notrace selects."""

    __slots__ = ("_ips", "version")

    def __init__(self, ips: Iterable[int] = ()):
        self._ips: set[int] = set(ips)
        self.version = 0  # counts changes in place: the explorer watches hashes by it

    def __contains__(self, ip: int) -> bool:
        return ip in self._ips

    def __len__(self) -> int:
        return len(self._ips)

    def __iter__(self):
        return iter(sorted(self._ips))

    @property
    def empty(self) -> bool:
        return not self._ips

    def add(self, ip: int) -> None:
        self._ips.add(ip)
        self.version += 1

    def remove(self, ip: int) -> None:
        self._ips.discard(ip)
        self.version += 1

    def copy(self) -> "FtraceHash":
        return FtraceHash(self._ips)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FtraceHash) and self._ips == other._ips

    def __repr__(self) -> str:
        return f"<FtraceHash {len(self._ips)} ips>"


def hash_contains_ip(ip: int, filter_hash: FtraceHash, notrace_hash: FtraceHash) -> bool:
    """Does an ops with these hashes trace ip: (filter empty or ip in it) and ip not in notrace."""
    return (filter_hash.empty or ip in filter_hash) and ip not in notrace_hash


class MatchType(enum.Enum):
    FULL = 0
    FRONT_ONLY = 1
    MIDDLE_ONLY = 2
    END_ONLY = 3


def filter_parse_regex(buff: str) -> tuple[MatchType, str, bool]:
    """filter_parse_regex() (kernel/trace/trace_events_filter.c, the same from v4.4 to
    v4.8.17): (type, search string, negated) for one pattern.

    A leading '!' negates.  A '*' first means END_ONLY; a '*' later ends the pattern there
    (FRONT_ONLY, or MIDDLE_ONLY after a leading one) and nothing after it counts.  '?', '['
    and '\\' are ordinary characters: full glob matching came in v4.10."""
    negate = buff.startswith("!")
    if negate:
        buff = buff[1:]
    kind = MatchType.FULL
    search = buff
    for i, ch in enumerate(buff):
        if ch != "*":
            continue
        if i == 0:
            search = buff[1:]
            kind = MatchType.END_ONLY
        else:
            kind = MatchType.MIDDLE_ONLY if kind == MatchType.END_ONLY else MatchType.FRONT_ONLY
            search = buff[1:i] if kind == MatchType.MIDDLE_ONLY else buff[:i]
            break
    return kind, search, negate


def ftrace_match(name: str, kind: MatchType, search: str) -> bool:
    """ftrace_match(): compare a symbol name with a parsed pattern."""
    if kind == MatchType.FULL:
        return name == search
    if kind == MatchType.FRONT_ONLY:
        return name.startswith(search)
    if kind == MatchType.MIDDLE_ONLY:
        return search in name
    return name.endswith(search)
