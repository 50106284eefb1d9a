"""The journal's writer: its own thread, so the disk never sits on the relay's path.

How it works: the supervisor hands over what it published once per loop pass
(`append_many`); the thread writes it in batches, one transaction each (WAL).
The hand-over waits only when this much is not written yet: MAX_PENDING events
or MAX_PENDING_BYTES (a disk slower than the relay: backpressure, never loss).

When it cannot write:
- the database is locked by another process: it waits (SQLite's busy timeout,
  then again) up to LOCK_GIVE_UP seconds, and says afterwards how long
  (`say`, a `bus` log); nothing is lost;
- anything else (a full disk, a file-size limit, a damaged file): it stops,
  and `error` says why, naming a full disk or a file-size limit as such, and
  after which event (`stopped_after`). The supervisor says so at once. Where the
  journal stopped is also written to its stop note (bus/journal_note.py), which
  a full disk cannot refuse, so `bus runs` and replay can say it later.
"""

from __future__ import annotations

import os
import queue
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .journal import BATCH, JOB_COLUMNS, PRUNE_EVERY, SCHEMA, Entry, migrate, prune
from .journal_note import StopNote
from .spool import pack_frames

MAX_PENDING = 20_000                 # events handed over and not yet written, before the hand-over waits
MAX_PENDING_BYTES = 64 * 1024 * 1024  # ... or their bytes
LOCK_GIVE_UP = 120.0                 # seconds a lock held by another process is waited for
BUSY_MS = 1000                       # SQLite's own wait for a lock, each try
TOLD_AFTER = 1.0                     # a lock waited for longer than this is said


class JournalWriter:
    def __init__(self, path: Path, *, max_bytes: int, max_age: float, say: Callable[[str], None] = lambda message: None) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self.max_bytes, self.max_age = max_bytes, max_age
        self.say = say                       # a note for the supervisor to publish (called from the thread; must not wait)
        self.error = ""                      # why it stopped ('' while it works): the bus goes on without it
        self.stopped_after: int | None = None  # the last gseq of the run written before it stopped
        self.written = 0
        self.note = StopNote(path)
        self._run_id = ""
        self._committed = 0                  # last gseq of the run committed
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._pending = self._pending_bytes = 0
        self._room = threading.Condition()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-journal", daemon=True)
        self._thread.start()
        self._ready.wait()

    def begin_run(self, run: str, started: float, pid: int) -> None:
        self._run_id = run
        self._put(("run", run, started, pid))

    def append(self, run: str, entry: Entry) -> None:
        self.append_many(run, [entry])

    def append_many(self, run: str, entries: list[Entry]) -> None:
        """Several events in one hand-over (the supervisor's loop: one per pass)."""
        if entries:
            size = sum(e.size for e in entries)
            self._put(("events", run, entries, size), len(entries), size)

    def append_jobs(self, rows: list[tuple[Any, ...]]) -> None:
        """Jobs in their new state (the `jobs` table's columns), written in the same order as the events."""
        if rows:
            self._put(("jobs", rows), len(rows), 0)

    def end_run(self, run: str, stopped: float, code: int) -> None:
        if self.error:  # the database takes no more: the stop note keeps how the run ended
            self.note.record(run, stopped=stopped, code=code)
            return
        self._put(("stop", run, stopped, code))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything handed over so far is committed (or the journal stopped)."""
        done = threading.Event()
        self._put(("flush", done))
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(0.1):  # in slices: a journal that stops meanwhile releases no barrier
            if self.error or (deadline is not None and time.monotonic() >= deadline):
                return self.error != ""
        return True

    def close(self) -> None:
        self._put(("close",))
        self._thread.join(timeout=60)

    def _put(self, item: tuple[Any, ...], events: int = 0, size: int = 0) -> None:
        with self._room:
            while not self.error and self._pending and (self._pending + events > MAX_PENDING or self._pending_bytes + size > MAX_PENDING_BYTES):
                self._room.wait()  # the disk is behind: backpressure, not loss
            if self.error:
                if item[0] == "flush":
                    item[1].set()
                return
            self._pending += events
            self._pending_bytes += size
        self._queue.put(item)

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            # No statement cache: a cached INSERT of many rows would keep their values bound (MBs each).
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=0)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            migrate(conn)
        except sqlite3.Error as exc:
            self.error = f"cannot open the journal {self.path}: {exc}"
            self._ready.set()
            return
        self.note.prepare()
        self._fold_note(conn)
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
                if self._commit(conn, items):
                    return
                if time.monotonic() - pruned > PRUNE_EVERY:
                    prune(conn, max_bytes=self.max_bytes, max_age=self.max_age)
                    pruned = time.monotonic()
        except sqlite3.Error as exc:
            self._stop(conn, exc)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, items: list[tuple[Any, ...]]) -> bool:
        """Write one batch, waiting out a lock another process holds; True when asked to close."""
        started = time.monotonic()
        while True:
            try:
                closing = self._write(conn, items)
                break
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if not _locked(exc) or time.monotonic() - started > LOCK_GIVE_UP:
                    raise
        with self._room:
            for item in items:
                if item[0] == "events":
                    self._pending -= len(item[2])
                    self._pending_bytes -= item[3]
                elif item[0] == "jobs":
                    self._pending -= len(item[1])
            self._room.notify_all()
        waited = time.monotonic() - started
        if waited > TOLD_AFTER:
            self.say(f"bus: the journal waited {waited:.1f}s for its database, locked by another process ({self.path}); nothing was lost, the relay waited meanwhile if the wait filled its queue")
        return closing

    def _write(self, conn: sqlite3.Connection, items: list[tuple[Any, ...]]) -> bool:
        """One transaction; returns True when asked to close."""
        barriers, closing, last = [], False, self._committed
        conn.execute("BEGIN")
        rows: list[Any] = []  # the events' values, laid end to end (ROW_VALUES each), written in statements of many rows
        for item in items:
            tag = item[0]
            if tag == "events":
                _, run, entries, _ = item
                held = 0
                for e in entries:
                    rows += (run, e.gseq, e.ts, e.kind, e.engine, pack_frames(e.frames), e.size)
                    held += e.size
                    if len(rows) == _STATEMENT_VALUES or held >= STATEMENT_BYTES:  # (written as they come: no copy of a whole batch)
                        _insert(conn, rows)
                        held = 0
                last = max(last, entries[-1].gseq)
                continue
            _insert(conn, rows)
            if tag == "jobs":
                _insert_jobs(conn, item[1])
            elif tag == "run":
                conn.execute("INSERT OR REPLACE INTO runs (run, started, pid) VALUES (?, ?, ?)", item[1:])
            elif tag == "stop":
                conn.execute("UPDATE runs SET stopped = ?, code = ? WHERE run = ?", (item[2], item[3], item[1]))
            elif tag == "flush":
                barriers.append(item[1])
            elif tag == "close":
                closing = True
        _insert(conn, rows)
        conn.execute("COMMIT")
        self.written += sum(len(item[2]) for item in items if item[0] == "events")
        self._committed = last
        for done in barriers:
            done.set()
        return closing

    def _stop(self, conn: sqlite3.Connection, exc: sqlite3.Error) -> None:
        """Writing failed for good: say why and where, keep it in the stop note, release every waiter."""
        self.stopped_after = self._committed
        cause = _cause(self.path, exc)
        self.error = f"the journal {self.path} stopped after event {self._committed} of this run: {cause}"
        noted = self.note.record(self._run_id, after=self._committed, error=cause, at=time.time())
        try:  # the database may still take this one line (it often cannot: then the note has it)
            conn.execute("UPDATE runs SET broken = ?, broken_after = ? WHERE run = ?", (cause, self._committed, self._run_id))
        except sqlite3.Error:
            if not noted:
                self.error += " (and it could not be written down: `bus runs` will not know)"
        with self._room:
            self._room.notify_all()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item[0] == "flush":
                item[1].set()

    def _fold_note(self, conn: sqlite3.Connection) -> None:
        """Move the stops an earlier supervisor noted into the runs table (if there is room now)."""
        records = self.note.read()
        if not records:
            return
        try:
            for r in records:
                conn.execute(
                    "UPDATE runs SET broken = ?, broken_after = ?, stopped = COALESCE(stopped, ?), code = COALESCE(code, ?) WHERE run = ?",
                    (r.get("error", "stopped"), r.get("after"), r.get("stopped"), r.get("code"), r["run"]),
                )
        except sqlite3.Error:
            return  # still no room: the note keeps them
        self.note.clear()


def _insert(conn: sqlite3.Connection, rows: list[Any]) -> None:
    """Insert these rows (ROW_VALUES values each, end to end, at most ROWS_PER_STATEMENT)
    in one statement, and empty the list.

    Many rows per INSERT, not one: Python's sqlite3 lets go of the GIL
    around every statement it steps, and taking it back waits for the supervisor's
    loop to give it up (up to the 5 ms switch interval). Measured with a busy Python
    thread beside it: 3,385 us per row one by one (executemany), 66 us per row 100 at
    a time; alone, 4.3 and 3.9 us."""
    if rows:
        conn.execute(_INSERTS.get(len(rows)) or _insert_sql(len(rows)), rows)
        rows.clear()


def _insert_jobs(conn: sqlite3.Connection, jobs: list[tuple[Any, ...]]) -> None:
    """Upsert job rows, many per statement (as _insert does for events)."""
    for start in range(0, len(jobs), JOB_ROWS_PER_STATEMENT):
        chunk = jobs[start:start + JOB_ROWS_PER_STATEMENT]
        sql = _JOB_INSERTS.get(len(chunk))
        if sql is None:
            sql = _JOB_INSERTS[len(chunk)] = "INSERT OR REPLACE INTO jobs VALUES " + ",".join(["(" + ", ".join("?" * JOB_COLUMNS) + ")"] * len(chunk))
        conn.execute(sql, [value for row in chunk for value in row])


JOB_ROWS_PER_STATEMENT = 999 // JOB_COLUMNS
_JOB_INSERTS: dict[int, str] = {}


def _insert_sql(values: int) -> str:
    sql = _INSERTS[values] = "INSERT OR REPLACE INTO events VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * (values // ROW_VALUES))
    return sql


ROW_VALUES = 7            # columns of the events table
ROWS_PER_STATEMENT = 128  # 896 values: under SQLite's oldest limit on variables (999)
STATEMENT_BYTES = 1024 * 1024  # ... or fewer rows, once their events hold this many bytes
_STATEMENT_VALUES = ROWS_PER_STATEMENT * ROW_VALUES
_INSERTS: dict[int, str] = {}


def _locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _cause(path: Path, exc: sqlite3.Error) -> str:
    """Why writing failed, in words: a full disk and a file-size limit are named as such."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and free < 1024 * 1024:
        return f"the disk is full ({free // 1024} KiB free where it lives: free some space, or point BUS_STATE_DIR elsewhere)"
    limit = _file_size_limit()
    if limit is not None:
        sizes = [os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists()]
        if sizes and max(sizes) + 64 * 1024 >= limit:
            return f"a file-size limit of {limit // 1024} KiB (ulimit -f) stops its files from growing"
    if _locked(exc):
        return f"its database stayed locked by another process for {LOCK_GIVE_UP:g}s ({exc})"
    return f"SQLite said: {exc}"


def _file_size_limit() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft
