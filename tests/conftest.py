"""Shared fixtures: a freshly booted guest kernel per test (boot takes milliseconds)."""

from __future__ import annotations

import pytest

import guest
from emu.kernel import Kernel


@pytest.fixture
def kernel() -> Kernel:
    return Kernel(guest.VMLINUX)


def module_file(name: str) -> str:
    return str(guest.module_path(name))
