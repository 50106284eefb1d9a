"""The supervisor: one loop that owns every socket; the fleet (fleet.py) owns the engines.

How it works: `run()` takes the session lock, binds PULL (engines), XPUB
(subscribers) and ROUTER (control) on the session's ipc paths (plus tcp with
`listen`), writes supervisor.json, starts the watchdog (engines die with us),
publishes `sup.start` and starts the engines. The loop polls the three
sockets, the children's inbox and the signal wake-up socket, and sleeps no
longer than the fleet's next timer. Engine messages are decoded and validated
(bad ones are counted and dropped, never fatal), numbered with a global
sequence number, published as `[topic, header, *blobs]`, kept in history and
handed to local sinks (the launcher's display). Signal handlers only wake the
loop.

Stopping (signal, `down`, an engine with on_exit = stop-all, or every engine
done) stops each engine with its stop signal, keeps relaying while they exit,
SIGKILLs what is left at each engine's deadline, publishes each exit after the
engine's last events, then `sup.stop`. It keeps answering subscriptions and
history requests until they go quiet, and only then closes the sockets.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any, Callable, Sequence

import msgpack
import zmq

from bus import sockets
from bus._version import __version__
from bus.protocol import Event, Log, RemoteProtocolError, SupervisorStarted, SupervisorStopped, Welcome, decode
from bus.protocol.codec import encode, header_map, topic_of
from bus.protocol.legacy import is_marker, parse_marker
from bus.protocol.limits import MAX_TEXT
from bus.errors import BusError
from bus.journal import Entry, JournalReader, JournalWriter
from bus.runtime import HAS_IPC, Session, SessionLock, journal_path, local_session, tcp_endpoints

from . import control
from .children import Child, Inbox
from .config import SupervisorConfig
from .fleet import Fleet
from .history import History
from .outcome import run_exit_code
from .wake import SignalWake
from .watchdog import Watchdog

Sink = Callable[[Event], None]
INGEST_BATCH = 1000  # messages read from one socket before the others get a turn
LATE_QUIET = 0.3     # after sup.stop, serve late subscribers until this long without requests
LATE_MAX = 5.0       # ... but no longer than this


class Supervisor:
    def __init__(self, config: SupervisorConfig, *, ctx: zmq.Context, sinks: Sequence[Sink] = ()) -> None:
        self.config = config
        self.ctx = ctx
        self.sinks = list(sinks)
        self.run_id = uuid.uuid4().hex[:16]
        self._inbox = Inbox()
        self.fleet = Fleet(config, publish=self._publish, accept=self._accept, inbox=self._inbox)
        self.fleet.on_stop_all = self.stop
        self.children = self.fleet.children
        self.history = History(config.history_events, config.history_bytes)
        self.gseq = 0
        self.started = time.time()
        self.endpoints: dict[str, list[str]] = {}
        self.counters = {"received": 0, "accepted": 0, "rejected": 0, "published": 0, "lines": 0}
        self.rejects: dict[str, int] = {}
        self.stop_reason = ""
        self.journal: JournalWriter | None = None
        self._reader: JournalReader | None = None
        self.finished = False  # sup.stop is out: only late subscribers are served
        self._stop_signal: int | None = None
        self._done = False

    # -- running -------------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; returns the exit code (see bus.exitcodes)."""
        session = local_session(self.config.session, create=True)
        lock = SessionLock(session)
        self.session = session
        watchdog = None
        try:
            self._open_journal(session)
            self._bind(session)
            watchdog = Watchdog() if self.config.watchdog else None
            session.write_info(
                {"pid": os.getpid(), "run": self.run_id, "version": __version__, "started": self.started,
                 "watchdog": watchdog.proc.pid if watchdog is not None and watchdog.proc is not None else None, **self.endpoints}
            )
            self.fleet.open(endpoint=self.endpoints["pull"][0], session_dir=session.dir, watchdog=watchdog)
            wake = SignalWake() if handle_signals else None
            try:
                self._publish(SupervisorStarted(run=self.run_id, pid=os.getpid(), version=__version__, engines=list(self.children)))
                if watchdog is not None and watchdog.broken:
                    self._publish(Log(message=f"bus: engines may outlive a killed supervisor: {watchdog.broken}", level="warning", stream="bus"))
                self.fleet.start_all()
                self._loop(wake)
            finally:
                if wake:
                    wake.close()
                self.fleet.kill_everything()
            code = self.exit_code()
            self._publish(SupervisorStopped(code=code, reason=self.stop_reason))
            if self.journal is not None:
                self.journal.end_run(self.run_id, time.time(), code)
            self.finished = True
            self._serve_late_subscribers()
            return code
        finally:
            if watchdog is not None:
                watchdog.close()
            if self.journal is not None:
                self.journal.close()
            self._close(session)
            lock.release()

    def _open_journal(self, session: Session) -> None:
        if not self.config.journal:
            return
        path = journal_path(session)
        self.journal = JournalWriter(path, max_bytes=self.config.journal_max_bytes, max_age=self.config.journal_max_age)
        if self.journal.error:
            raise BusError(f"{self.journal.error}: set BUS_STATE_DIR to a writable directory, or use --no-journal")
        self.journal.begin_run(self.run_id, self.started, os.getpid())

    def journal_reader(self) -> JournalReader | None:
        """For history the memory no longer holds, and for earlier runs."""
        if self.journal is None or self.journal.error:
            return None
        if self._reader is None:
            self._reader = JournalReader(self.journal.path)
        return self._reader

    def _bind(self, session: Session) -> None:
        files = {"control": "ctl", "pub": "pub", "pull": "pull"}
        local = {name: [session.ipc(f)] if HAS_IPC else ["tcp://127.0.0.1:*"] for name, f in files.items()}
        extra = tcp_endpoints(self.config.listen) if self.config.listen else {}
        wanted = {name: local[name] + ([extra[name]] if name in extra else []) for name in local}
        self.pull, self.endpoints["pull"] = sockets.pull(self.ctx, wanted["pull"])
        self.pub, self.endpoints["pub"] = sockets.xpub(self.ctx, wanted["pub"])
        self.router, self.endpoints["control"] = sockets.router(self.ctx, wanted["control"])

    def _loop(self, wake: SignalWake | None) -> None:
        poller = zmq.Poller()
        for sock in (self.pull, self.pub, self.router):
            poller.register(sock, zmq.POLLIN)
        poller.register(self._inbox.fileno(), zmq.POLLIN)
        if wake:
            poller.register(wake.fileno(), zmq.POLLIN)
        while True:
            next_due = self._tick()  # first: timers due, and "everything has ended" before any wait
            if self._done:
                return
            timeout = -1 if next_due is None else max(0, int((next_due - time.monotonic()) * 1000) + 1)
            ready = dict(poller.poll(timeout))
            if wake and wake.fileno() in ready:
                for signum in wake.signals():
                    self.stop(f"signal {signal.Signals(signum).name}", signum=signum)
            if self.pull in ready:
                self._ingest()
            if self._inbox.fileno() in ready:
                self._drain_inbox()
            if self.pub in ready:
                self._welcome()
            if self.router in ready:
                control.serve(self)

    def _tick(self) -> float | None:
        now = time.monotonic()
        next_due = self.fleet.tick(now)
        if self.fleet.all_final():
            if self.config.exit_when_done and not self.stop_reason:
                self.stop_reason = "all engines exited"
            self._done = bool(self.stop_reason)
        elif self.stop_reason and self.fleet.stuck(now):
            self._done = True  # something survived SIGKILL (uninterruptible sleep): stop waiting
        return next_due

    def stop(self, reason: str, *, signum: int | None = None) -> None:
        """Begin a graceful stop of everything; a second stop by signal kills at once."""
        if self.stop_reason:
            if signum is not None:
                self.fleet.kill_now()
            return
        self.stop_reason, self._stop_signal = reason, signum
        self.fleet.shutdown(reason)

    def exit_code(self) -> int:
        decider = self.children[self.config.exit_code_from] if self.config.exit_code_from else None
        return run_exit_code(self.children.values(), stop_signal=self._stop_signal, stop_reason=self.stop_reason, decider=decider)

    def _serve_late_subscribers(self) -> None:
        """After sup.stop, still welcome subscribers and answer their history
        requests until things are quiet, so one that connected near the end (or
        was waiting for a short run) still gets the whole run."""
        poller = zmq.Poller()
        poller.register(self.pub, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)
        give_up = time.monotonic() + LATE_MAX
        while (left := give_up - time.monotonic()) > 0:
            ready = dict(poller.poll(int(min(LATE_QUIET, left) * 1000)))
            if not ready:
                return
            if self.pub in ready:
                self._welcome()
            if self.router in ready:
                control.serve(self)

    # -- what engines send ------------------------------------------------------------

    def _ingest(self) -> None:
        for _ in range(INGEST_BATCH):
            try:
                frames = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.counters["received"] += 1
            try:
                event = decode([frames[0].bytes, *(f.buffer for f in frames[1:])], from_engine=True)
                child = self.children.get(event.engine)
                if child is None:
                    raise RemoteProtocolError(f"unknown engine {event.engine!r}", reason="unknown-engine")
            except RemoteProtocolError as exc:
                self.counters["rejected"] += 1
                self.rejects[exc.reason] = self.rejects.get(exc.reason, 0) + 1
                continue
            self._accept(child, event, frames[1:])

    def _accept(self, child: Child, event: Event, blobs: Sequence[Any] | None = None) -> None:
        """An event from an engine's SDK (received, or recovered from its spool)."""
        if event.seq is not None and event.seq <= child.max_seq and child.exit is not None:
            return  # recovered from its spool already; the late original is a duplicate
        self.counters["accepted"] += 1
        child.events += 1
        child.run_events += 1
        self._publish(event, blobs)
        self.fleet.seen(child, event)

    def _drain_inbox(self) -> None:
        for item in self._inbox.drain():
            tag, child = item[0], item[1]
            if tag == "line":
                self._on_line(child, *item[2:])
            elif tag == "eof":
                child.open_streams.discard(item[2])
            elif tag == "exit":
                self.fleet.exited(child, item[2], item[3])

    def _on_line(self, child: Child, stream: str, text: str, cut: int, ts: float) -> None:
        child.lines += 1
        self.counters["lines"] += 1
        if stream == "stdout" and is_marker(text) and not cut:
            try:
                event = parse_marker(text, engine=child.name, ts=ts)
            except RemoteProtocolError:
                child.bad_markers += 1  # not understood: still shown, as the line it was
            else:
                child.markers += 1
                self._publish(event)
                self.fleet.seen(child, event)
                return
        if cut:
            text = f"{text[: MAX_TEXT - 64]} [... {cut} more bytes cut]"
        self._publish(Log(engine=child.name, ts=ts, message=text, stream=stream))

    # -- publishing --------------------------------------------------------------

    def _publish(self, event: Event, blobs: Sequence[Any] | None = None) -> None:
        self.gseq += 1
        numbered = event.stamped(self.gseq)
        header = msgpack.packb(header_map(numbered), use_bin_type=True)
        if blobs is None:
            blobs = [getattr(numbered, name) for name in numbered.BLOB_FIELDS]
        body = [header, *blobs]
        self.pub.send_multipart([topic_of(numbered), *body])
        self.counters["published"] += 1
        size = sum(len(f) for f in body)
        entry = Entry(self.gseq, numbered.KIND, numbered.engine, numbered.ts, body, size)
        self.history.append(entry)
        if self.journal is not None:
            self.journal.append(self.run_id, entry)
        self.fleet.observe(numbered)
        for sink in self.sinks:
            sink(numbered)

    def _welcome(self) -> None:
        """Answer each new subscription on its own prefix, so it reaches that subscriber."""
        while True:
            try:
                message = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if message[:1] == b"\x01":
                welcome = Welcome(run=self.run_id, last=self.gseq)
                self.pub.send_multipart([message[1:], *encode(welcome)])

    def _close(self, session: Session) -> None:
        for name in ("pull", "router", "pub"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close()
        self._inbox.close()
        if self._reader is not None:
            self._reader.close()
        try:
            session.info_file.unlink()
        except OSError:
            pass
