"""Test engine: sends screenshots of SIZE bytes as fast as it can, until killed.

    python shots.py COUNTERS SIZE

COUNTERS is a 16-byte file, mapped: the number of `screenshot()` calls begun
(u64), then the number returned (u64), each written around the call, so a
SIGKILL at any moment leaves the truth there: the call in progress, if any,
is the only one whose fate is open.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bus.engine import Engine  # noqa: E402


def main() -> None:
    path, size = sys.argv[1], int(sys.argv[2])
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 16)
    counters = mmap.mmap(fd, 16)
    os.close(fd)
    data = os.urandom(size)
    with Engine() as eng:
        calls = 0
        while True:
            calls += 1
            struct.pack_into("<Q", counters, 0, calls)
            eng.screenshot(data, name=f"s{calls}.png")
            struct.pack_into("<Q", counters, 8, calls)


if __name__ == "__main__":
    main()
