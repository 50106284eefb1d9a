"""The spool: a crash-proof copy of what an engine has sent (a file format, no sockets).

Why: a zmq send returns once the message is queued *inside* the engine
process; its I/O thread writes it to the kernel a little later. If the engine
is SIGKILLed in between, those events die with it. So the SDK also writes every
event it sends into this file, through a shared memory mapping: the bytes are
in the kernel's page cache the moment they are copied, and survive the death of
the process. When an engine ends without its final `bye`, the supervisor reads
the spool and publishes the events it never received, in order.

Format: a 128-byte file header, then a ring of records, each 8-byte aligned:

    header  = b"BUSSPOOL" | version u32 = 2 | size u32 | acked u64 | drops u64 x 12
    record  = b"BUSR" | seq u64 | frames u16 | flags u16 | payload length u32 | crc32 u32 | payload
    payload = for each frame: length u32 | bytes        (little-endian throughout)

The crc covers seq, frames, flags and payload, and the header is written
after the payload, so a record torn by a kill mid-write is simply invalid.
When a record does not fit before the end, b"BUSW" marks the wrap and writing
starts over after the file header. A record larger than half the ring is
replaced by a payload-less record flagged TOO_BIG, so its loss can be named.

`acked` is written by the supervisor, as one aligned 8-byte store: the newest
seq it has received from this process (0 until it has mapped the spool, at the
engine's hello; a supervisor that does not acknowledge leaves it 0, and the
ring then keeps the newest, as version 1 did). The writer never overwrites a
record above it, once it is not 0: when the ring is full of events the supervisor has not
received, `write` says so and the engine waits or drops, as for a full send
queue. So what the engine has queued is always in the ring, however large its
events: a SIGKILL loses nothing but a TOO_BIG record. `drops` count the events
the engine dropped, per kind (SPOOL_KINDS order), so the supervisor knows the
last drops of a killed engine too.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import zlib
from collections import deque
from pathlib import Path
from typing import Any, Sequence

FILE_MAGIC = b"BUSSPOOL"
FILE_HEAD = struct.Struct("<8sII")  # magic, version, size (of the whole file)
VERSION = 2
HEADER = 128
U64 = struct.Struct("<Q")
ACKED_AT = 16  # u64, written by the supervisor
DROPS_AT = 24  # u64 per kind
# The kinds whose drops the header counts, in slot order (never reorder: it is a file format).
SPOOL_KINDS = ("hello", "heartbeat", "phase.start", "phase.done", "phase.error", "progress", "log", "screenshot", "finding", "result", "error", "bye")
_DROP_AT = {kind: DROPS_AT + 8 * k for k, kind in enumerate(SPOOL_KINDS)}
REC_MAGIC = b"BUSR"
WRAP_MAGIC = b"BUSW"
REC_HEAD = struct.Struct("<4sQHHII")  # magic, seq, frames, flags, payload length, crc
FRAME_LEN = struct.Struct("<I")
TOO_BIG = 1
DEFAULT_SIZE = 4 * 1024 * 1024
# TOO_BIG events are not in the ring, so the ring cannot bound them: at most this many
# of their bytes may be sent and not yet received by the supervisor (but always one).
BIG_IN_FLIGHT = 16 * 1024 * 1024


def _aligned(n: int) -> int:
    return (n + 7) & ~7


def _crc(seq: int, frames: int, flags: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QHH", seq, frames, flags))) & 0xFFFFFFFF


class SpoolWriter:
    """Used by one engine process, under its send lock."""

    def __init__(self, path: str | os.PathLike[str], size: int = DEFAULT_SIZE) -> None:
        size = max(64 * 1024, _aligned(size))
        # O_EXCL: a second process under the same BUS_SPOOL (a shell running two programs) must not
        # truncate a spool the supervisor has mapped (that would be a SIGBUS there): it gets FileExistsError.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._map[: FILE_HEAD.size] = FILE_HEAD.pack(FILE_MAGIC, VERSION, size)
        self._size = size
        self._pos = HEADER
        self._acked = ctypes.c_uint64.from_buffer(self._map, ACKED_AT)  # one aligned 8-byte load: never torn
        self._records: deque[tuple[int, int, int]] = deque()  # (seq, start, end) in the ring, oldest first
        self._big: deque[tuple[int, int]] = deque()  # (seq, bytes) of TOO_BIG events not known received
        self._big_bytes = 0

    def write(self, seq: int, frames: Sequence[bytes | memoryview]) -> int | None:
        """Copy one event into the ring; returns where, for `retract`. None (nothing
        written) when that would overwrite an event the supervisor has not received."""
        flags, big = 0, 0
        size = sum(map(len, frames))  # (byte frames, as pack_frames counts them)
        if REC_HEAD.size + FRAME_LEN.size * len(frames) + size > (self._size - HEADER) // 2:
            payload, flags, big = b"", TOO_BIG, size
            if not self._big_room(big):
                return None
        else:
            payload = pack_frames(frames)
        total = _aligned(REC_HEAD.size + len(payload))
        pos = self._pos
        wrap = pos + total > self._size
        start = HEADER if wrap else pos
        records = self._records
        if records:  # (checked inline: in the first lap nothing is overwritten, and this is the hot path)
            _, first, first_end = records[0]
            if ((wrap and first >= pos) or (first < start + total and first_end > start)) and not self._make_room(wrap, start, start + total):
                return None
        if wrap and self._pos + len(WRAP_MAGIC) <= self._size:
            self._map[self._pos : self._pos + len(WRAP_MAGIC)] = WRAP_MAGIC
        body = start + REC_HEAD.size
        self._map[body : body + len(payload)] = payload
        self._map[start:body] = REC_HEAD.pack(REC_MAGIC, seq, len(frames), flags, len(payload), _crc(seq, len(frames), flags, payload))
        self._pos = start + total
        records.append((seq, start, self._pos))
        if big:
            self._big.append((seq, big))
            self._big_bytes += big
        return start

    def _big_room(self, nbytes: int) -> bool:
        """Whether a TOO_BIG event of `nbytes` may go now (BIG_IN_FLIGHT; `write` counts it once written)."""
        big, acked = self._big, self._acked.value
        while big and (not acked or big[0][0] <= acked):  # (acked 0: nobody acknowledges, nothing is held)
            self._big_bytes -= big.popleft()[1]
        return not big or self._big_bytes + nbytes <= BIG_IN_FLIGHT

    def _make_room(self, wrap: bool, start: int, end: int) -> bool:
        """Forget the oldest records this write destroys (those past the wrap point, and
        those under [start, end)); False, forgetting nothing, if one was not received yet."""
        records, pos = self._records, self._pos
        acked = self._acked.value  # 0: no supervisor maps it (yet, or ever): the ring keeps the newest
        doomed = 0
        for seq, rec_start, rec_end in records:
            if not ((wrap and rec_start >= pos) or (rec_start < end and rec_end > start)):
                break
            if acked and seq > acked:
                return False
            doomed += 1
        for _ in range(doomed):
            records.popleft()
        return True

    def retract(self, start: int) -> None:
        """Undo the last `write` (the send failed: that sequence number is reused)."""
        self._map[start : start + len(REC_MAGIC)] = b"\0" * len(REC_MAGIC)
        self._pos = start
        seq = self._records.pop()[0]
        if self._big and self._big[-1][0] == seq:
            self._big_bytes -= self._big.pop()[1]

    def count_drop(self, kind: str) -> None:
        """One more event of `kind` dropped (kinds not in SPOOL_KINDS are not counted here)."""
        at = _DROP_AT.get(kind)
        if at is not None:
            U64.pack_into(self._map, at, U64.unpack_from(self._map, at)[0] + 1)

    def close(self) -> None:
        del self._acked  # (an exported buffer would keep the map from closing)
        self._map.close()


class SpoolAcks:
    """The supervisor's side: the spool's header, mapped, to write `acked` and read the drops."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size < HEADER:
                raise ValueError(f"{path}: not a spool")
            self._map = mmap.mmap(fd, HEADER)
        finally:
            os.close(fd)
        magic, version, _ = FILE_HEAD.unpack_from(self._map, 0)
        if magic != FILE_MAGIC or version != VERSION:
            self._map.close()
            raise ValueError(f"{path}: not a version {VERSION} spool")
        self._acked = ctypes.c_uint64.from_buffer(self._map, ACKED_AT)  # one aligned 8-byte store: never torn

    def ack(self, seq: int) -> None:
        self._acked.value = seq

    def drops(self) -> dict[str, int]:
        return drops_in(self._map)

    def close(self) -> None:
        del self._acked
        self._map.close()


def drops_in(header: bytes | mmap.mmap) -> dict[str, int]:
    """The per-kind drop counts in a spool's header (those not zero)."""
    counts = {kind: U64.unpack_from(header, at)[0] for kind, at in _DROP_AT.items()}
    return {kind: n for kind, n in counts.items() if n}


def read_spool(path: str | os.PathLike[str], after: int = 0) -> dict[int, list[bytes] | None]:
    """seq -> frames of every intact record numbered above `after` (None: it was too big to keep).
    (Those at or below it are skipped unread: the supervisor has them, and a 4 MiB ring holds
    some 25,000 small ones.)"""
    data = Path(path).read_bytes()
    if len(data) < HEADER or data[:8] != FILE_MAGIC:
        return {}
    header = 64 if FILE_HEAD.unpack_from(data)[1] == 1 else HEADER  # (version 1: a 64-byte header, no acks)
    records: dict[int, list[bytes] | None] = {}
    at = data.find(REC_MAGIC, header)
    while at != -1:
        parsed = _record(data, at, after) if at % 8 == 0 else None
        if parsed is None:
            at = data.find(REC_MAGIC, at + 1)
            continue
        seq, frames, end = parsed
        if seq >= 0:
            records[seq] = frames
        at = data.find(REC_MAGIC, end)
    return records


def _record(data: bytes, at: int, after: int = 0) -> tuple[int, list[bytes] | None, int] | None:
    if at + REC_HEAD.size > len(data):
        return None
    _, seq, count, flags, length, crc = REC_HEAD.unpack_from(data, at)
    body = at + REC_HEAD.size
    if body + length > len(data):
        return None
    if seq <= after:  # (not checked, not kept: skipped to its end; a torn one there is found by the search)
        return -1, None, at + len(REC_MAGIC)  # (searched on from there, as after a torn one: its length is not trusted)
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
    if len(frames) == 1 and type(frames[0]) is bytes:  # (a header alone: the journal's hottest case)
        return _LEN(len(frames[0])) + frames[0]
    return b"".join(FRAME_LEN.pack(len(f)) + bytes(f) for f in frames)


_LEN = FRAME_LEN.pack


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
