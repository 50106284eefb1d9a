"""Give freed memory back to the OS (glibc's malloc_trim), at most twice a second.

The supervisor's Python heap stays flat once its history ring is full, but
glibc keeps what was freed in its arenas (many threads: libzmq's I/O thread,
the journal writer, two readers per engine), so under a long flood RSS creeps
up: four flooding engines, 200,000 events: 176 MiB untrimmed, 91 MiB trimmed
once a second. A trim took about 0.5 ms. A no-op where glibc is not the
allocator (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import sys
import time
from typing import Callable

EVERY = 0.5  # seconds between trims at most (each took about 0.5 ms with a 150 MiB heap)


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter runs on (find_library would run ldconfig: 20-1,000 ms)
        trim = libc.malloc_trim  # glibc only (musl has none)
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class Trimmer:
    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._next = time.monotonic() + EVERY

    def maybe(self, now: float) -> None:
        """Trim if it is time (called from the loop; never schedules a wake-up of its own)."""
        if self._trim is not None and now >= self._next:
            self._trim(0)
            self._next = now + EVERY
