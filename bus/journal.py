"""The journal: every published event of a session, on disk (SQLite), so history
survives the supervisor and screenshots can be fetched later.

How it works: the supervisor hands each published event to a JournalWriter,
whose own thread writes them in batches (one transaction per batch, WAL mode),
so the disk never sits on the relay's path; `flush()` waits until everything
handed over is committed. Retention deletes the oldest events past `max_age`
seconds or `max_bytes` of database. A JournalReader answers the same questions
as the in-memory history, for any run, read-only and from any process: after
the supervisor is gone, or from the supervisor that followed it.

    runs(run PRIMARY KEY, started, stopped, code, pid)
    events(run, gseq, ts, kind, engine, frames, size; PRIMARY KEY (run, gseq))

`frames` is the published `[header, *blobs]`, each frame behind its length.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from .errors import BusError, NotRunning
from .runtime import Address, journal_path
from .spool import pack_frames, unpack_frames

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run TEXT PRIMARY KEY, started REAL NOT NULL, stopped REAL, code INTEGER, pid INTEGER);
CREATE TABLE IF NOT EXISTS events (
    run TEXT NOT NULL, gseq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL, engine TEXT NOT NULL,
    frames BLOB NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (run, gseq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""
BATCH = 2000          # events per transaction at most
PRUNE_EVERY = 30.0    # seconds between retention passes
T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class Entry:
    """One stored event, as kept in memory (history ring) or read from the journal."""

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

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class JournalWriter:
    def __init__(self, path: Path, *, max_bytes: int, max_age: float, queue_size: int = 10_000) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self.max_bytes, self.max_age = max_bytes, max_age
        self.error = ""  # set if writing failed (disk full, ...): the journal stops, the bus goes on
        self.written = 0
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(queue_size)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-journal", daemon=True)
        self._thread.start()
        self._ready.wait()

    def begin_run(self, run: str, started: float, pid: int) -> None:
        self._put(("run", run, started, pid))

    def append(self, run: str, entry: Entry) -> None:
        self._put(("events", run, [entry]))

    def append_many(self, run: str, entries: list[Entry]) -> None:
        """Several events in one hand-over (the supervisor's loop: one per pass)."""
        if entries:
            self._put(("events", run, entries))

    def end_run(self, run: str, stopped: float, code: int) -> None:
        self._put(("stop", run, stopped, code))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything handed over so far is committed."""
        done = threading.Event()
        self._put(("flush", done))
        return self.error != "" or done.wait(timeout)

    def close(self) -> None:
        self._put(("close",))
        self._thread.join(timeout=60)

    def _put(self, item: tuple[Any, ...]) -> None:
        if not self.error:
            self._queue.put(item)  # blocks while the disk is behind: backpressure, not loss

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            self.error = f"cannot open the journal {self.path}: {exc}"
            self._ready.set()
            return
        self._ready.set()
        pruned = time.monotonic()
        try:
            while True:
                items = [self._queue.get()]
                while len(items) < BATCH:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if self._write(conn, items):
                    return
                if time.monotonic() - pruned > PRUNE_EVERY:
                    prune(conn, max_bytes=self.max_bytes, max_age=self.max_age)
                    pruned = time.monotonic()
        except sqlite3.Error as exc:
            self.error = f"the journal {self.path} failed: {exc}"
            _drain_barriers(self._queue)
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, items: list[tuple[Any, ...]]) -> bool:
        """One transaction; returns True when asked to close."""
        barriers, closing = [], False
        conn.execute("BEGIN")
        for item in items:
            tag = item[0]
            if tag == "events":
                _, run, entries = item
                conn.executemany(
                    "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(run, e.gseq, e.ts, e.kind, e.engine, pack_frames(e.frames), e.size) for e in entries],
                )
                self.written += len(entries)
            elif tag == "run":
                conn.execute("INSERT OR REPLACE INTO runs (run, started, pid) VALUES (?, ?, ?)", item[1:])
            elif tag == "stop":
                conn.execute("UPDATE runs SET stopped = ?, code = ? WHERE run = ?", (item[2], item[3], item[1]))
            elif tag == "flush":
                barriers.append(item[1])
            elif tag == "close":
                closing = True
        conn.execute("COMMIT")
        for done in barriers:
            done.set()
        return closing


def _drain_barriers(items: queue.Queue[tuple[Any, ...]]) -> None:
    while True:
        try:
            item = items.get_nowait()
        except queue.Empty:
            return
        if item[0] == "flush":
            item[1].set()


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
    return deleted


def _used_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return pages * conn.execute("PRAGMA page_size").fetchone()[0]


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
        rows = self._conn.execute(
            "SELECT r.run, r.started, r.stopped, r.code, r.pid, MIN(e.gseq), MAX(e.gseq), COUNT(e.gseq) "
            "FROM runs r LEFT JOIN events e ON e.run = r.run GROUP BY r.run ORDER BY r.started"
        ).fetchall()
        return [RunInfo(run, started, stopped, code, pid, first or 0, last or 0, events) for run, started, stopped, code, pid, first, last, events in rows]

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
