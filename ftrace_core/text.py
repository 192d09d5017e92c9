"""The narrow interface between the ftrace core and the text it patches.

The core reads bytes, writes bytes (through the machine's single text-write path) and asks
for the text to be made writable and read-only again; nothing else.  `EmulatedText` runs it
on the emulator; `ftrace_core.testing.FakeText` runs it in memory for core tests.
"""

from __future__ import annotations

from typing import Iterator, Protocol


class TextFault(Exception):
    """A text read or write faulted; `address` is where."""

    def __init__(self, address: int, message: str = ""):
        super().__init__(message or f"fault at {address:#x}")
        self.address = address


class TextPort(Protocol):
    def read(self, ip: int, size: int) -> bytes:
        """probe_kernel_read: the bytes at ip, or TextFault."""

    def write(self, ip: int, data: bytes) -> None:
        """probe_kernel_write by the CPU doing the work: TextFault if the store faults."""

    def write_batch(self, writes: list[tuple[int, bytes]]) -> int:
        """Several writes in order in one pass; how many landed before one faulted."""

    def prepare(self) -> Iterator[object]:
        """ftrace_arch_code_modify_prepare's permission step: text writable."""

    def post_process(self) -> Iterator[object]:
        """ftrace_arch_code_modify_post_process's step: text read-only again."""
