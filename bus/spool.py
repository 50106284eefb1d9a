"""The spool: a crash-proof copy of what an engine has sent (a file format, no sockets).

Why: a zmq send returns once the message is queued *inside* the engine
process; its I/O thread writes it to the kernel a little later. If the engine
is SIGKILLed in between, those events die with it. So the SDK also writes every
event it sends into this file, through a shared memory mapping: the bytes are
in the kernel's page cache the moment they are copied, and survive the death of
the process. When an engine ends without its final `bye`, the supervisor reads
the spool and publishes the events it never received, in order.

Format: a 64-byte file header (b"BUSSPOOL", version, size), then a ring of
records, each 8-byte aligned:

    b"BUSR" | seq u64 | frames u16 | flags u16 | payload length u32 | crc32 u32 | payload
    payload = for each frame: length u32 | bytes        (little-endian throughout)

The crc covers seq, frames, flags and payload, and the header is written
after the payload, so a record torn by a kill mid-write is simply invalid.
When a record does not fit before the end, b"BUSW" marks the wrap and writing
starts over after the file header. A record larger than half the ring is
replaced by a payload-less record flagged TOO_BIG, so its loss can be named.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Sequence

FILE_MAGIC = b"BUSSPOOL"
FILE_HEAD = struct.Struct("<8sII")  # magic, version, size (of the whole file)
HEADER = 64
REC_MAGIC = b"BUSR"
WRAP_MAGIC = b"BUSW"
REC_HEAD = struct.Struct("<4sQHHII")  # magic, seq, frames, flags, payload length, crc
FRAME_LEN = struct.Struct("<I")
TOO_BIG = 1
DEFAULT_SIZE = 4 * 1024 * 1024


def _aligned(n: int) -> int:
    return (n + 7) & ~7


def _crc(seq: int, frames: int, flags: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QHH", seq, frames, flags))) & 0xFFFFFFFF


class SpoolWriter:
    """Used by one engine process, under its send lock."""

    def __init__(self, path: str | os.PathLike[str], size: int = DEFAULT_SIZE) -> None:
        size = max(64 * 1024, _aligned(size))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._map[: FILE_HEAD.size] = FILE_HEAD.pack(FILE_MAGIC, 1, size)
        self._size = size
        self._pos = HEADER

    def write(self, seq: int, frames: Sequence[bytes | memoryview]) -> int:
        """Copy one event into the ring; returns where, for `retract`."""
        payload = pack_frames(frames)
        flags = 0
        if REC_HEAD.size + len(payload) > (self._size - HEADER) // 2:
            payload, flags = b"", TOO_BIG
        total = _aligned(REC_HEAD.size + len(payload))
        if self._pos + total > self._size:
            if self._pos + len(WRAP_MAGIC) <= self._size:
                self._map[self._pos : self._pos + len(WRAP_MAGIC)] = WRAP_MAGIC
            self._pos = HEADER
        start = self._pos
        body = start + REC_HEAD.size
        self._map[body : body + len(payload)] = payload
        self._map[start:body] = REC_HEAD.pack(REC_MAGIC, seq, len(frames), flags, len(payload), _crc(seq, len(frames), flags, payload))
        self._pos = start + total
        return start

    def retract(self, start: int) -> None:
        """Undo the last `write` (the send failed: that sequence number is reused)."""
        self._map[start : start + len(REC_MAGIC)] = b"\0" * len(REC_MAGIC)
        self._pos = start

    def close(self) -> None:
        self._map.close()


def read_spool(path: str | os.PathLike[str]) -> dict[int, list[bytes] | None]:
    """seq -> frames of every intact record (None: it was too big to keep)."""
    data = Path(path).read_bytes()
    if len(data) < HEADER or data[:8] != FILE_MAGIC:
        return {}
    records: dict[int, list[bytes] | None] = {}
    at = data.find(REC_MAGIC, HEADER)
    while at != -1:
        parsed = _record(data, at) if at % 8 == 0 else None
        if parsed is None:
            at = data.find(REC_MAGIC, at + 1)
            continue
        seq, frames, end = parsed
        records[seq] = frames
        at = data.find(REC_MAGIC, end)
    return records


def _record(data: bytes, at: int) -> tuple[int, list[bytes] | None, int] | None:
    if at + REC_HEAD.size > len(data):
        return None
    _, seq, count, flags, length, crc = REC_HEAD.unpack_from(data, at)
    body = at + REC_HEAD.size
    if body + length > len(data):
        return None
    payload = data[body : body + length]
    if _crc(seq, count, flags, payload) != crc:
        return None
    end = at + _aligned(REC_HEAD.size + length)
    if flags & TOO_BIG:
        return seq, None, end
    frames = unpack_frames(payload)
    return (seq, frames, end) if frames is not None and len(frames) == count else None


def pack_frames(frames: Sequence[Any]) -> bytes:
    """Frames laid end to end, each behind its length (u32, little-endian)."""
    return b"".join(FRAME_LEN.pack(len(f)) + bytes(f) for f in frames)


def unpack_frames(data: bytes) -> list[bytes] | None:
    """The inverse of pack_frames; None if `data` is not such a sequence."""
    frames, pos = [], 0
    while pos < len(data):
        if pos + FRAME_LEN.size > len(data):
            return None
        (size,) = FRAME_LEN.unpack_from(data, pos)
        pos += FRAME_LEN.size
        if pos + size > len(data):
            return None
        frames.append(data[pos : pos + size])
        pos += size
    return frames
