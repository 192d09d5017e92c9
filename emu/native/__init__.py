"""Host-side helpers written in C, built on first use with the system's gcc (the compiler
the guest is built with) and loaded with ctypes.

Each library is built once per source: the file name carries a hash of the source and the
flags, so an edited source builds anew and concurrent processes (pytest's workers) never
load a half-written file.  The build goes beside the sources when that folder is writable
(a checkout), else into a per-user folder under the system's temporary directory.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from unicorn import unicorn_const as uc_const
from unicorn.unicorn_py3 import unicorn as binding  # uc_hook_add with a C callback

from ..errors import EmuError

HERE = Path(__file__).resolve().parent
CFLAGS = ("-O2", "-shared", "-fPIC", "-Wall", "-Werror")


class NativeBuildError(EmuError):
    """A host helper could not be built (no gcc, or gcc refused the source)."""


def _build_dir() -> Path:
    local = HERE / "_build"
    try:
        local.mkdir(exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"ftrace-emu-native-{os.getuid()}"
    fallback.mkdir(mode=0o700, exist_ok=True)
    return fallback


def build(source: Path) -> Path:
    """The shared library built from a C source (built now if this source has not been)."""
    text = source.read_bytes()
    digest = hashlib.sha256(text + " ".join(CFLAGS).encode()).hexdigest()[:16]
    target = _build_dir() / f"{source.stem}-{digest}.so"
    if not target.exists():
        gcc = shutil.which("gcc")
        if gcc is None:
            raise NativeBuildError(f"{source}: gcc is needed to build this host helper (apt-get install gcc)")
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        result = subprocess.run([gcc, *CFLAGS, "-o", str(partial), str(source)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise NativeBuildError(f"{source}: gcc failed: {result.stderr.strip()}")
        os.replace(partial, target)
    return target


@cache
def load(name: str) -> ctypes.CDLL:
    """Build emu/native/NAME.c if needed and load it."""
    return ctypes.CDLL(str(build(HERE / f"{name}.c")))


def add_block_hook(uc, callback: ctypes.c_void_p, user_data: ctypes.c_void_p, what: str) -> int:
    """uc_hook_add of a UC_HOOK_BLOCK over every address with a C callback (the Python
    binding only takes Python callables, so call the library as the binding itself does);
    returns the hook's handle.  what names the hook in the error if Unicorn refuses it."""
    handle = binding.uc_hook_h()
    status = binding.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), uc_const.UC_HOOK_BLOCK, callback,
                                       user_data, ctypes.c_uint64(1), ctypes.c_uint64(0))
    if status != uc_const.UC_ERR_OK:
        raise RuntimeError(f"uc_hook_add for {what} failed ({status})")
    return handle.value
