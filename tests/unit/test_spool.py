from __future__ import annotations

import os
from pathlib import Path

from bus.spool import HEADER, SpoolWriter, read_spool


def test_records_come_back_byte_for_byte(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path / "s", size=1 << 20)
    spool.write(1, [b"header one"])
    spool.write(2, [b"header two", bytes(range(256)) * 40])
    spool.close()
    assert read_spool(tmp_path / "s") == {1: [b"header one"], 2: [b"header two", bytes(range(256)) * 40]}
    assert oct(os.stat(tmp_path / "s").st_mode & 0o777) == "0o600"


def test_the_ring_wraps_and_keeps_the_newest(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path / "s", size=64 * 1024)
    for seq in range(1, 2001):
        spool.write(seq, [f"event {seq}".encode() * 3])
    spool.close()
    records = read_spool(tmp_path / "s")
    newest = sorted(records)[-1]
    assert newest == 2000
    kept = sorted(records)
    assert kept == list(range(kept[0], 2001)), "the newest records are contiguous"
    assert len(kept) > 500
    assert all(records[s] == [f"event {s}".encode() * 3] for s in kept)


def test_a_torn_record_is_ignored(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path / "s", size=1 << 20)
    spool.write(1, [b"complete"])
    start = spool.write(2, [b"will be torn" * 10])
    spool.close()
    data = bytearray((tmp_path / "s").read_bytes())
    data[start + 40] ^= 0xFF  # a kill in the middle of copying the payload
    (tmp_path / "s").write_bytes(bytes(data))
    assert read_spool(tmp_path / "s") == {1: [b"complete"]}


def test_retract_forgets_an_event_that_was_not_sent(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path / "s", size=1 << 20)
    spool.write(1, [b"a"])
    start = spool.write(2, [b"dropped"])
    spool.retract(start)
    spool.write(2, [b"b"])
    spool.close()
    assert read_spool(tmp_path / "s") == {1: [b"a"], 2: [b"b"]}


def test_too_big_records_are_named_not_kept(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path / "s", size=64 * 1024)
    spool.write(1, [b"h", b"x" * 40_000])
    spool.write(2, [b"small"])
    spool.close()
    assert read_spool(tmp_path / "s") == {1: None, 2: [b"small"]}


def test_garbage_files_read_as_empty(tmp_path: Path) -> None:
    (tmp_path / "g").write_bytes(b"not a spool" * 100)
    (tmp_path / "e").write_bytes(b"")
    assert read_spool(tmp_path / "g") == {} and read_spool(tmp_path / "e") == {}
    spool = SpoolWriter(tmp_path / "s", size=64 * 1024)
    spool.close()
    assert read_spool(tmp_path / "s") == {}
    assert (tmp_path / "s").stat().st_size == 64 * 1024 and HEADER == 128
