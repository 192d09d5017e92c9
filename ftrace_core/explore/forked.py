"""Work in forked children of this process: one child per call (spawn, collect) or a
bounded pool of them (map_forked), each handing back one picklable result over a pipe.

A child starts from this process's state as it is at the fork (the booted kernel,
typically) and leaves through os._exit, so nothing of the parent (atexit handlers, buffered
output) runs twice.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from typing import Callable


def collect(child: tuple[int, int]) -> object | None:
    """What a child process wrote back (a RunTrace, a report, or the exception it raised);
    None if it died without a word."""
    pid, r = child
    chunks = []
    while True:
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    data = b"".join(chunks)
    if len(data) < 8:
        return None
    return pickle.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])


def map_forked(fn: Callable[..., object], items: list, jobs: int,
               progress: Callable[[int, object], None] | None = None) -> list:
    """fn over items, each in a child process of its own, at most `jobs` at a time; results in
    the order of items.  (Each child may fork further: explorations do.)  With progress, fn
    is called as fn(item, tick): each value a child gives tick (something small) reaches
    progress(index of the item, value) in this process while the child runs."""
    results: dict[int, object] = {}
    pending = list(enumerate(items))
    running: dict[int, tuple[tuple[int, int], int]] = {}
    ticks: dict[int, tuple[int, bytearray]] = {}  # progress pipe -> (item index, bytes so far)
    while pending or running:
        while pending and len(running) < max(1, jobs):
            index, item = pending.pop(0)
            if progress is None:
                child = spawn(lambda item=item: fn(item))
            else:
                r, w = os.pipe()
                child = spawn(lambda item=item, w=w: fn(item, _ticker(w)))
                os.close(w)  # the child has its copy: the pipe ends when the child does
                ticks[r] = (index, bytearray())
            running[child[1]] = (child, index)
        ready, _, _ = select.select(list(running) + list(ticks), [], [])
        for fd in ready:
            if fd in ticks:
                _read_ticks(fd, ticks, progress)
                continue
            if fd not in running:
                continue  # a progress pipe read to its end with its child's result just now
            child, index = running.pop(fd)
            results[index] = collect(child)
            if results[index] is None:
                results[index] = RuntimeError(f"the child for item {index} died without a result")
            for tick_fd in [t for t, (i, _) in ticks.items() if i == index]:
                _read_ticks(tick_fd, ticks, progress, until_eof=True)
            if isinstance(results[index], BaseException):
                raise results[index]
    return [results[i] for i in range(len(items))]


def _ticker(w: int) -> Callable[[object], None]:
    def tick(value: object) -> None:
        data = pickle.dumps(value)
        os.write(w, struct.pack("<I", len(data)) + data)
    return tick


def _read_ticks(fd: int, ticks: dict, progress: Callable[[int, object], None], until_eof: bool = False) -> None:
    """Pass on the whole messages waiting in a child's progress pipe; close it at its end."""
    index, buf = ticks[fd]
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            os.close(fd)
            del ticks[fd]
            break
        buf += chunk
        if not until_eof:
            break
    while len(buf) >= 4 and len(buf) >= 4 + struct.unpack("<I", buf[:4])[0]:
        size = struct.unpack("<I", buf[:4])[0]
        progress(index, pickle.loads(bytes(buf[4:4 + size])))
        del buf[:4 + size]


def spawn(work: Callable[[], object]) -> tuple[int, int]:
    """Fork a child running work(); (pid, the pipe its result comes back on)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            result = work()
        except BaseException as exc:  # hand the error to the parent, which raises it
            result = exc
        _write_all(w, result)
        os._exit(0)
    os.close(w)
    return pid, r


def _write_all(w: int, obj: object) -> None:
    data = pickle.dumps(obj)
    os.write(w, struct.pack("<Q", len(data)))
    view = memoryview(data)
    while view:
        n = os.write(w, view[:1 << 16])
        view = view[n:]
