"""Messages between the explorer's processes: each a pickled object after its length (8
bytes, little-endian), over a socket (send, receive) or a pipe's ends (write, read).  Reading
gives None when the stream ends first: the other side closed it, or died."""

from __future__ import annotations

import os
import pickle
import socket
import struct
from typing import Callable

_CHUNK = 1 << 20


def send(sock: socket.socket, obj: object) -> None:
    sock.sendall(_frame(obj))


def receive(sock: socket.socket) -> object | None:
    """One message, or None at the end of the stream (the other side closed or died)."""
    return _message(sock.recv)


def write(fd: int, obj: object) -> None:
    view = memoryview(_frame(obj))
    while view:
        n = os.write(fd, view[:1 << 16])
        view = view[n:]


def read(fd: int) -> object | None:
    """One message written by write(); None if the stream ends first (the writer died)."""
    return _message(lambda n: os.read(fd, n))


def _frame(obj: object) -> bytes:
    data = pickle.dumps(obj)
    return struct.pack("<Q", len(data)) + data


def _message(read_some: Callable[[int], bytes]) -> object | None:
    head = _exactly(read_some, 8)
    if head is None:
        return None
    body = _exactly(read_some, struct.unpack("<Q", head)[0])
    return None if body is None else pickle.loads(body)


def _exactly(read_some: Callable[[int], bytes], n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = read_some(min(n - len(buf), _CHUNK))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
