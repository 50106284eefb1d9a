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


def test_with_acks_it_never_overwrites_what_the_supervisor_has_not_received(tmp_path: Path) -> None:
    from bus.spool import SpoolAcks

    spool = SpoolWriter(tmp_path / "s", size=64 * 1024)
    record = [b"x" * 1000]
    seq = 0
    while spool.write(seq + 1, record) is not None:  # acked 0: nobody maps it yet, the ring keeps the newest
        seq += 1
        if seq == 200:
            break
    assert seq == 200, "before a supervisor maps it, the ring wraps as it always did"
    acks = SpoolAcks(tmp_path / "s")
    acks.ack(150)  # the supervisor has everything up to 150
    written = []
    while (start := spool.write(seq + 1, record)) is not None:
        seq += 1
        written.append(seq)
    assert written, "room was made of what the supervisor already has"
    assert sorted(read_spool(tmp_path / "s"))[0] == 151, "nothing above 150 was overwritten"
    assert spool.write(seq + 1, record) is None  # full of what it has not received: the engine waits or drops
    acks.ack(seq)
    assert spool.write(seq + 1, record) is not None
    spool.count_drop("screenshot")
    spool.count_drop("screenshot")
    spool.count_drop("log")
    assert acks.drops() == {"screenshot": 2, "log": 1}
    acks.close()
    spool.close()


def test_events_too_big_for_the_ring_are_bounded_in_flight_by_the_acks(tmp_path: Path) -> None:
    """The ring cannot hold them, so it cannot bound them: at most BIG_IN_FLIGHT bytes of them
    (but always one) may be unreceived, or a flood of large screenshots fills the supervisor."""
    from bus.spool import BIG_IN_FLIGHT, SpoolAcks

    spool = SpoolWriter(tmp_path / "s", size=64 * 1024)
    shot = [b"h", memoryview(b"x" * (BIG_IN_FLIGHT // 4 - 1))]  # a quarter of the bound, its header included
    assert all(spool.write(seq, shot) is not None for seq in range(1, 9)), "acked 0: no supervisor, nothing held back"
    acks = SpoolAcks(tmp_path / "s")
    acks.ack(8)
    sent = [seq for seq in range(9, 20) if spool.write(seq, shot) is not None]
    assert sent == [9, 10, 11, 12], "four quarters of the bound, then full: the engine waits or drops"
    acks.ack(10)
    assert spool.write(13, shot) is not None and spool.write(14, shot) is not None and spool.write(15, shot) is None
    start = spool.write(15, [b"small"])  # a small event still goes: it is in the ring
    assert start is not None
    huge = [b"h", b"x" * (2 * BIG_IN_FLIGHT)]
    acks.ack(15)
    mark = spool.write(16, huge)
    assert mark is not None, "one alone always goes, however large"
    assert spool.write(17, shot) is None
    spool.retract(mark)  # its send failed: it is not in flight
    assert spool.write(16, shot) is not None
    acks.close()
    spool.close()


def test_a_big_event_refused_for_a_full_ring_is_not_counted_in_flight(tmp_path: Path) -> None:
    """A TOO_BIG record still needs its place in the ring: refused for want of it, the event
    was not sent, and once the supervisor has everything it must go."""
    from bus.spool import SpoolAcks

    spool = SpoolWriter(tmp_path / "s", size=64 * 1024)
    acks = SpoolAcks(tmp_path / "s")
    acks.ack(1)
    seq = 0
    while spool.write(seq + 1, [b"abcd"]) is not None:  # 32-byte records fill the ring exactly, then wrap
        seq += 1  # (over the one received, then no further)
    big = [b"h", b"x" * (10 << 20)]
    assert spool.write(seq + 1, big) is None, "no room in the ring for its record"
    assert spool.write(seq + 1, big) is None  # (the SDK retries the same number)
    acks.ack(seq)  # the supervisor has everything sent
    assert spool.write(seq + 1, big) is not None, "nothing is in flight: one big event always goes"
    acks.close()
    spool.close()


def test_a_second_process_under_the_same_spool_does_not_truncate_it(tmp_path: Path) -> None:
    import pytest

    first = SpoolWriter(tmp_path / "s", size=64 * 1024)
    first.write(1, [b"kept"])
    with pytest.raises(FileExistsError):
        SpoolWriter(tmp_path / "s", size=64 * 1024)
    first.close()
    assert read_spool(tmp_path / "s") == {1: [b"kept"]}


def test_reading_after_a_number_skips_what_the_supervisor_has(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path / "s", size=1 << 20)
    for seq in range(1, 101):
        spool.write(seq, [f"header {seq} BUSR inside".encode()])  # (the magic inside a payload is searched past)
    spool.close()
    assert read_spool(tmp_path / "s", after=97) == {98: [b"header 98 BUSR inside"], 99: [b"header 99 BUSR inside"], 100: [b"header 100 BUSR inside"]}
    assert len(read_spool(tmp_path / "s")) == 100
