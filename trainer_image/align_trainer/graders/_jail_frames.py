"""The grader jail's wire format, one copy for both ends: frames of a 4-byte big-endian length and a JSON object.

The pool (`jail.py`) imports it; the worker (`_jail_worker.py`) loads it by path before it confines itself, so this
file uses the standard library only and imports nothing of align_trainer.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time


def frame(obj: dict) -> bytes:
    """One frame; values JSON cannot hold (dates in a dataset row) go as text rather than failing the call."""
    data = json.dumps(obj, allow_nan=True, default=str).encode()
    return struct.pack(">I", len(data)) + data


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes, or None at EOF / past the deadline."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None, max_size: int) -> dict | str:
    """One frame, or why not: 'eof', 'timeout', 'oversized' (longer than max_size) or 'malformed'."""
    def ended() -> str:
        return "timeout" if deadline is not None and time.monotonic() >= deadline else "eof"

    head = read_exact(fd, 4, deadline)
    if head is None:
        return ended()
    (size,) = struct.unpack(">I", head)
    if size > max_size:
        return "oversized"
    body = read_exact(fd, size, deadline)
    if body is None:
        return ended()
    try:
        return json.loads(body)
    except ValueError:
        return "malformed"
