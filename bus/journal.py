"""The journal: every published event of a session, on disk (SQLite), so history
survives the supervisor and screenshots can be fetched later.

How it works: the supervisor hands each published event to a JournalWriter
(bus/journal_writer.py), whose own thread writes them in batches, so the disk
never sits on the relay's path. Retention deletes the oldest events past
`max_age` seconds or `max_bytes` of database. A JournalReader answers the same
questions as the in-memory history, for any run, read-only and from any
process: after the supervisor is gone, or from the supervisor that followed it.

    runs(run PRIMARY KEY, started, stopped, code, pid, broken, broken_after)
    events(run, gseq, ts, kind, engine, frames, size; PRIMARY KEY (run, gseq))
    jobs(id PRIMARY KEY, queue, state, attempt, instance, payload, result, error,
         submitted, joined, started, ended, n)

`jobs` holds each job of the session's work queues in its newest state
(queued, running, done, dead; payload and result msgpack), so a supervisor
started after one that was killed takes them back (supervisor/work.py); `n`
orders a queue.

`broken` says why the journal stopped during that run (a full disk, ...) and
`broken_after` the last event it holds of it; a stop the database could not
take is in the stop note beside it (bus/journal_note.py), which readers merge.

`frames` is the published `[header, *blobs]`, each frame behind its length.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from .errors import BusError, NotRunning
from .journal_note import StopNote
from .runtime import Address, journal_path
from .spool import unpack_frames

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run TEXT PRIMARY KEY, started REAL NOT NULL, stopped REAL, code INTEGER, pid INTEGER, broken TEXT, broken_after INTEGER);
CREATE TABLE IF NOT EXISTS events (
    run TEXT NOT NULL, gseq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL, engine TEXT NOT NULL,
    frames BLOB NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (run, gseq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL, instance TEXT,
    payload BLOB, result BLOB, error TEXT, submitted REAL, joined REAL, started REAL, ended REAL, n INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, ended);
"""
JOB_COLUMNS = 13
MAX_DONE_KEPT = 100_000  # finished jobs the journal keeps (the newest; also no older than its max age)
BATCH = 2000          # events per transaction at most
PRUNE_EVERY = 30.0    # seconds between retention passes
T = TypeVar("T")


@dataclass(slots=True)  # (not frozen: one is made per event published, and a frozen init costs 0.7 us, this one 0.3)
class Entry:
    """One stored event, as kept in memory (history ring) or read from the journal. Never changed."""

    gseq: int
    kind: str
    engine: str
    ts: float
    frames: list[Any]  # [header, *blobs]
    size: int


def cut_page(items: Iterable[T], size_of: Callable[[T], int], *, limit: int, max_bytes: int) -> tuple[list[T], bool]:
    """The first `limit` items, or fewer if their sizes pass `max_bytes` (but at least
    one); `more` is true when something was left out. Shared by the memory history
    and the journal, so a page ends the same way from either."""
    out: list[T] = []
    size = 0
    for item in items:
        length = size_of(item)
        if out and (len(out) >= limit or size + length > max_bytes):
            return out, True
        out.append(item)
        size += length
    return out, False


@dataclass(slots=True, frozen=True)
class RunInfo:
    run: str
    started: float
    stopped: float | None  # None: still running, or its supervisor was killed
    code: int | None
    pid: int | None
    first: int             # oldest gseq still held (0: none)
    last: int
    events: int
    broken: str | None = None        # why the journal stopped during this run (it holds events up to broken_after)
    broken_after: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a journal written by an older bus up to this schema (columns are only added)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, kind in (("broken", "TEXT"), ("broken_after", "INTEGER")):
        if name not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")


def prune(conn: sqlite3.Connection, *, max_bytes: int, max_age: float, now: float | None = None) -> int:
    """Delete the oldest events past `max_age` or beyond `max_bytes`; returns how many."""
    now = time.time() if now is None else now
    deleted = 0
    if max_age > 0:
        deleted += conn.execute("DELETE FROM events WHERE ts < ?", (now - max_age,)).rowcount
    if max_bytes > 0:
        while _used_bytes(conn) > max_bytes:
            count = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            if not count:
                break
            chunk = max(1, count // 10)
            deleted += conn.execute(
                "DELETE FROM events WHERE (run, gseq) IN (SELECT run, gseq FROM events ORDER BY ts LIMIT ?)", (chunk,)
            ).rowcount
    conn.execute("DELETE FROM runs WHERE stopped IS NOT NULL AND run NOT IN (SELECT DISTINCT run FROM events)")
    if max_age > 0:
        conn.execute("DELETE FROM jobs WHERE state = 'done' AND ended < ?", (now - max_age,))
    conn.execute("DELETE FROM jobs WHERE state = 'done' AND ended < (SELECT ended FROM jobs WHERE state = 'done' ORDER BY ended DESC LIMIT 1 OFFSET ?)", (MAX_DONE_KEPT,))
    return deleted


JOB_SELECT = "id, queue, state, attempt, instance, payload, result, error, submitted, joined, started, ended, n"


def load_jobs(path: Path, done_limit: int = 0) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """The jobs a journal holds that are not done, in queue order (running ones first), then the
    newest `done_limit` done ones (oldest first: their ids make a resubmit after a restart queue
    nothing twice), and the done count per queue."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(f"SELECT {JOB_SELECT} FROM jobs WHERE state != 'done' ORDER BY state != 'running', n").fetchall()
        if done_limit > 0:
            rows += reversed(conn.execute(f"SELECT {JOB_SELECT} FROM jobs WHERE state = 'done' ORDER BY ended DESC, n DESC LIMIT ?", (done_limit,)).fetchall())
        done = dict(conn.execute("SELECT queue, COUNT(*) FROM jobs WHERE state = 'done' GROUP BY queue").fetchall())
        return rows, done
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return [], {}
        raise
    finally:
        conn.close()


def _used_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return pages * conn.execute("PRAGMA page_size").fetchone()[0]


def disk_bytes(path: Path) -> int:
    """What a journal takes on disk now: its database and its write-ahead log (status `journal.bytes`)."""
    total = 0
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            total += part.stat().st_size
        except OSError:
            pass  # (no WAL between checkpoints, or gone)
    return total


class JournalError(BusError):
    """A journal that cannot be read (damaged, or not a journal)."""


class _Guarded(sqlite3.Connection):
    """A read-only connection whose errors are one line for the user (JournalError)."""

    path: Path

    def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"the journal {self.path} cannot be read ({exc}): it is damaged or not a journal; move it away (the next supervisor starts a new one)") from None


class JournalReader:
    """Read-only; safe beside a writer in another thread or process (WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, factory=_Guarded)
        self._conn.path = path

    def runs(self) -> list[RunInfo]:
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(runs)")}
        broken = "r.broken, r.broken_after" if "broken" in have else "NULL, NULL"  # a journal of an older bus
        rows = self._conn.execute(
            f"SELECT r.run, r.started, r.stopped, r.code, r.pid, MIN(e.gseq), MAX(e.gseq), COUNT(e.gseq), {broken} "
            "FROM runs r LEFT JOIN events e ON e.run = r.run GROUP BY r.run ORDER BY r.started"
        ).fetchall()
        noted = {r["run"]: r for r in StopNote(self.path).read()}
        infos = []
        for run, started, stopped, code, pid, first, last, events, why, after in rows:
            note = noted.get(run, {})
            infos.append(RunInfo(
                run, started, stopped if stopped is not None else note.get("stopped"), code if code is not None else note.get("code"), pid,
                first or 0, last or 0, events, why or note.get("error"), after if after is not None else note.get("after"),
            ))
        return infos

    def first(self, run: str) -> int:
        return self._conn.execute("SELECT MIN(gseq) FROM events WHERE run = ?", (run,)).fetchone()[0] or 0

    def select(
        self,
        run: str,
        *,
        after: int = 0,
        until: int | None = None,
        last: int | None = None,
        since: float | None = None,
        kinds: Iterable[str] | None = None,
        engines: Iterable[str] | None = None,
        limit: int = 1000,
        max_bytes: int = 32 * 1024 * 1024,
    ) -> tuple[list[Entry], bool]:
        """As History.select: after < gseq <= until, filters, oldest first; (entries, more)."""
        where, params = ["run = ?", "gseq > ?"], [run, after]
        if until is not None:
            where.append("gseq <= ?")
            params.append(until)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        for column, values in (("kind", kinds), ("engine", engines)):
            if values is not None:
                values = list(values)
                where.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
                params += values
        query = f"SELECT gseq, kind, engine, ts, frames, size FROM events WHERE {' AND '.join(where)}"
        if last is not None:
            rows = self._conn.execute(f"{query} ORDER BY gseq DESC LIMIT ?", (*params, last)).fetchall()[::-1]
        else:
            rows = self._conn.execute(f"{query} ORDER BY gseq LIMIT ?", (*params, limit + 1)).fetchall()
        kept, more = cut_page(rows, lambda row: row[5], limit=limit, max_bytes=max_bytes)
        return [Entry(gseq, kind, engine, ts, unpack_frames(frames) or [], length) for gseq, kind, engine, ts, frames, length in kept], more

    def page(self, run: str, **query: Any) -> tuple[list[Entry], dict[str, Any]]:
        """`select`, with the fields of a `history` reply (first, last, more, next),
        for clients that read the journal when no supervisor answers."""
        entries, more = self.select(run, **query)
        first, last = self._conn.execute("SELECT MIN(gseq), MAX(gseq) FROM events WHERE run = ?", (run,)).fetchone()
        after = query.get("after", 0)
        return entries, {"run": run, "first": first or 0, "last": last or 0, "more": more, "next": entries[-1].gseq if entries else after}

    def close(self) -> None:
        self._conn.close()


def open_journal(address: Address) -> JournalReader:
    """The local session's journal, read-only; NotRunning if there is none."""
    path = journal_path(address.session) if address.session is not None else None
    if path is None or not path.exists():
        where = f" at {path}" if path else ""
        raise NotRunning(f"no supervisor answered at {address.label}, and there is no journal to read{where}")
    return JournalReader(path)
