"""Work in forked children of this process: one child per call (spawn, collect) or a
bounded pool of them (map_forked), each handing back one picklable result over a pipe.  A
child made by spawn_asking may also put questions to this process while it works; they are
answered while its result is collected.

A child starts from this process's state as it is at the fork (the booted kernel,
typically) and leaves through os._exit, so nothing of the parent (atexit handlers, buffered
output) runs twice.
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import socket
import struct
from dataclasses import dataclass
from typing import Callable

from emu import wire

#: In a child of spawn_asking: put a question to the parent and wait for its answer.
Ask = Callable[[object], object]


@dataclass(frozen=True)
class _Question:
    """A child's question, told apart from its result on the channel they share."""

    body: object


def collect(child: tuple[int, int], answer: Callable[[object], object] | None = None) -> object | None:
    """What a child process wrote back (a RunTrace, a report, or the exception it raised);
    None if it died without a word.  answer replies to the questions of a child made by
    spawn_asking, in the order it asks them."""
    pid, fd = child
    try:
        while True:
            message = wire.read(fd)
            if not isinstance(message, _Question):
                return message
            if answer is None:
                raise RuntimeError("a forked child asked a question, and no one is there to answer it")
            reply = (answer(message.body),)  # in a tuple: None is an answer, not the end
            try:
                wire.write(fd, reply)
            except (BrokenPipeError, ConnectionResetError):
                pass  # it died asking: the next read finds the end of its stream
    finally:
        os.close(fd)  # a child still waiting for an answer then reads the end, and exits
        os.waitpid(pid, 0)


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
    try:
        _pool(fn, pending, running, ticks, results, jobs, progress)
    except BaseException:
        _stop(running, ticks)
        raise
    return [results[i] for i in range(len(items))]


def _stop(running: dict, ticks: dict) -> None:
    """On an error or Ctrl-C: ask the children still running to stop (SIGINT: an exploration
    then ends its own processes, as it does on Ctrl-C), and wait for them, so none is left
    behind as a zombie."""
    for fd in list(ticks):
        os.close(fd)
    for (pid, fd), _ in running.values():
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        os.close(fd)
    for (pid, _), _ in running.values():
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _pool(fn: Callable[..., object], pending: list, running: dict, ticks: dict, results: dict, jobs: int,
          progress: Callable[[int, object], None] | None) -> None:
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


def spawn_asking(work: Callable[[Ask], object]) -> tuple[int, int]:
    """Fork a child running work(ask), where ask(question) waits for the answer of the
    collect() that reads its result; (pid, the socket both go over)."""
    mine, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        mine.close()
        fd = theirs.detach()

        def ask(question: object) -> object:
            wire.write(fd, _Question(question))
            reply = wire.read(fd)
            if reply is None:
                raise ConnectionError("the parent stopped answering")
            return reply[0]

        _finish(fd, lambda: work(ask))
    theirs.close()
    return pid, mine.detach()


def spawn(work: Callable[[], object]) -> tuple[int, int]:
    """Fork a child running work(); (pid, the pipe its result comes back on)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _finish(w, work)
    os.close(w)
    return pid, r


def _finish(fd: int, work: Callable[[], object]) -> None:
    """In a child: run work(), write what it gives (or the error it raised) on fd, exit."""
    gc.freeze()  # the inherited heap is no garbage here (emu.forktree: ForkTree._work)
    try:
        try:
            result = work()
        except BaseException as exc:  # hand the error to the parent, which raises it
            result = exc
        wire.write(fd, result)
    finally:
        os._exit(0)  # never back into the parent's code, even if the parent is gone
