from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from bus.journal import Entry, JournalReader, prune
from bus.journal_writer import JournalWriter


def entry(gseq: int, kind: str = "log", engine: str = "e", ts: float | None = None, blob: bytes | None = None) -> Entry:
    frames = [f"header {gseq}".encode()] + ([blob] if blob is not None else [])
    return Entry(gseq, kind, engine, 1000.0 + gseq if ts is None else ts, frames, sum(len(f) for f in frames))


def fill(path: Path, runs: dict[str, int]) -> None:
    writer = JournalWriter(path, max_bytes=0, max_age=0)
    for run, count in runs.items():
        writer.begin_run(run, 1.0, 42)
        for g in range(1, count + 1):
            writer.append(run, entry(g, "screenshot" if g % 5 == 0 else "log", f"e{g % 2}", blob=b"\x89PNG" * g if g % 5 == 0 else None))
        writer.end_run(run, 2.0, 0)
    writer.close()
    assert writer.error == ""


def test_written_events_read_back_byte_for_byte_per_run(tmp_path: Path) -> None:
    path = tmp_path / "j" / "journal.sqlite"
    fill(path, {"r1": 20, "r2": 7})
    assert oct(os.stat(path).st_mode & 0o777) == "0o600" and oct(os.stat(path.parent).st_mode & 0o777) == "0o700"
    reader = JournalReader(path)
    entries, more = reader.select("r1")
    assert [e.gseq for e in entries] == list(range(1, 21)) and not more
    assert entries[9].frames == [b"header 10", b"\x89PNG" * 10] and entries[9].kind == "screenshot"
    assert [e.gseq for e in reader.select("r2")[0]] == list(range(1, 8))
    runs = {info.run: info for info in reader.runs()}
    assert (runs["r1"].first, runs["r1"].last, runs["r1"].events, runs["r1"].stopped, runs["r1"].code) == (1, 20, 20, 2.0, 0)


def test_select_answers_like_the_memory_history(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    fill(path, {"r": 20})
    reader = JournalReader(path)

    def gseqs(**query: object) -> list[int]:
        return [e.gseq for e in reader.select("r", **query)[0]]

    assert gseqs(after=15) == [16, 17, 18, 19, 20]
    assert gseqs(after=3, until=6) == [4, 5, 6]
    assert gseqs(kinds=["screenshot"]) == [5, 10, 15, 20]
    assert gseqs(engines=["e1"], until=6) == [1, 3, 5]
    assert gseqs(last=3) == [18, 19, 20]
    assert gseqs(last=2, kinds=["screenshot"], until=14) == [5, 10]
    assert gseqs(since=1017.0) == [17, 18, 19, 20]
    assert gseqs(kinds=[]) == []
    page, more = reader.select("r", limit=7)
    assert ([e.gseq for e in page], more) == (list(range(1, 8)), True)
    assert reader.select("nope") == ([], False)


def test_flush_makes_everything_handed_over_readable(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    writer = JournalWriter(path, max_bytes=0, max_age=0)
    writer.begin_run("r", 1.0, 1)
    for g in range(1, 5001):
        writer.append("r", entry(g))
    assert writer.flush(timeout=60)
    assert len(JournalReader(path).select("r", limit=10_000)[0]) == 5000
    writer.close()


def test_retention_by_age_and_by_size(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    writer = JournalWriter(path, max_bytes=0, max_age=0)
    writer.begin_run("old", 1.0, 1)
    for g in range(1, 101):
        writer.append("old", entry(g, ts=time.time() - 10 * 86400, blob=b"x" * 10_000))
    writer.end_run("old", 2.0, 0)
    writer.begin_run("new", 3.0, 1)
    for g in range(1, 301):
        writer.append("new", entry(g, ts=time.time(), blob=b"y" * 10_000))
    writer.close()
    conn = sqlite3.connect(path)
    assert prune(conn, max_bytes=0, max_age=7 * 86400) == 100
    assert [r[0] for r in conn.execute("SELECT run FROM runs")] == ["new"]  # a run with nothing left goes too
    assert prune(conn, max_bytes=1_000_000, max_age=0) > 0
    remaining = [r[0] for r in conn.execute("SELECT gseq FROM events ORDER BY gseq")]
    assert remaining == list(range(remaining[0], 301)), "the oldest went first"
    assert len(remaining) < 300
    conn.close()


def test_an_unwritable_journal_says_so(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where a directory should be")
    with pytest.raises(OSError):
        JournalWriter(blocked / "journal.sqlite", max_bytes=0, max_age=0)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    writer = JournalWriter(garbage, max_bytes=0, max_age=0)
    assert writer.error == f"cannot open the journal {garbage}: file is not a database"


def test_a_stop_the_database_could_not_take_is_read_from_the_note_and_folded_in_later(tmp_path: Path) -> None:
    from bus.journal_note import SIZE, StopNote

    path = tmp_path / "journal.sqlite"
    fill(path, {"r1": 5})
    note = StopNote(path)
    assert note.path.stat().st_size == SIZE  # made, full size, when the journal opened
    assert note.record("r1", after=3, error="the disk is full (0 KiB free)", at=5.0)
    assert note.record("r1", stopped=9.0, code=1)  # the run's end, added later
    assert note.path.stat().st_size == SIZE  # written in place, never grown
    info = JournalReader(path).runs()[0]
    assert (info.broken, info.broken_after, info.stopped, info.code) == ("the disk is full (0 KiB free)", 3, 2.0, 0)  # the database's stop wins
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET stopped = NULL, code = NULL")
    conn.commit()
    conn.close()
    info = JournalReader(path).runs()[0]
    assert (info.stopped, info.code) == (9.0, 1)  # a killed run's end, from the note
    writer = JournalWriter(path, max_bytes=0, max_age=0)  # the next supervisor: moves it into the runs table
    writer.close()
    assert note.read() == []
    info = JournalReader(path).runs()[0]
    assert (info.broken, info.broken_after, info.stopped, info.code) == ("the disk is full (0 KiB free)", 3, 9.0, 1)
