"""The supervisor: one loop that owns every socket and every child.

How it works: `run()` takes the session lock, binds PULL (engines), XPUB
(subscribers) and ROUTER (control) on the session's ipc paths (plus tcp with
`listen`), writes supervisor.json, publishes `sup.start` and spawns the
engines. The loop polls the three sockets, the children's inbox and the
signal wake-up socket. Engine messages are decoded and validated (bad ones are
counted and dropped, never fatal), numbered with a global sequence number,
published as `[topic, header, *blobs]`, kept in history and handed to local
sinks (the launcher's display). Signal handlers only wake the loop.

Stopping (signal, `down` request, or every engine done) sends SIGTERM to each
engine's process group, keeps relaying while they exit, SIGKILLs the groups
still alive at the deadline, publishes each exit after the engine's last
events, then `sup.stop`. It keeps answering subscriptions and history
requests until they go quiet, and only then closes the sockets.
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
from bus.protocol import (
    EngineExited,
    EngineState,
    Event,
    Log,
    RemoteProtocolError,
    SupervisorStarted,
    SupervisorStopped,
    Welcome,
    decode,
)
from bus.protocol.codec import encode, header_map, topic_of
from bus.protocol.legacy import is_marker, parse_marker
from bus.protocol.limits import MAX_TEXT
from bus.runtime import HAS_IPC, SessionLock, local_session, tcp_endpoints

from . import control
from .children import Child, Inbox, engine_env, exit_info
from .config import SupervisorConfig
from .history import Entry, History
from .lifecycle import ALIVE, FINAL, State, Trigger, next_state
from .outcome import run_exit_code, spawn_error
from .wake import SignalWake

Sink = Callable[[Event], None]
INGEST_BATCH = 1000  # messages read from one socket before the others get a turn
KILL_WAIT = 5.0      # after SIGKILL, give up waiting for exits after this long
LATE_QUIET = 0.3     # after sup.stop, serve late subscribers until this long without requests
LATE_MAX = 5.0       # ... but no longer than this


class Supervisor:
    def __init__(self, config: SupervisorConfig, *, ctx: zmq.Context, sinks: Sequence[Sink] = ()) -> None:
        self.config = config
        self.ctx = ctx
        self.sinks = list(sinks)
        self.run_id = uuid.uuid4().hex[:16]
        self.children = {spec.name: Child(spec) for spec in config.engines}
        self.history = History(config.history_events, config.history_bytes)
        self.gseq = 0
        self.started = time.time()
        self.endpoints: dict[str, list[str]] = {}
        self.counters = {"received": 0, "accepted": 0, "rejected": 0, "published": 0, "lines": 0}
        self.rejects: dict[str, int] = {}
        self.stop_reason = ""
        self._stop_signal: int | None = None
        self._stop_deadline: float | None = None
        self._killed_at: float | None = None
        self._done = False
        self._inbox = Inbox()

    # -- running -------------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; returns the exit code (see bus.exitcodes)."""
        session = local_session(self.config.session, create=True)
        lock = SessionLock(session)
        self.session = session
        try:
            self._bind(session)
            wake = SignalWake() if handle_signals else None
            try:
                self._publish(SupervisorStarted(run=self.run_id, pid=os.getpid(), version=__version__, engines=list(self.children)))
                for child in self.children.values():
                    self._spawn(child)
                self._loop(wake)
            finally:
                if wake:
                    wake.close()
                self._kill_everything()
            code = self.exit_code()
            self._publish(SupervisorStopped(code=code, reason=self.stop_reason))
            self._serve_late_subscribers()
            return code
        finally:
            self._close(session)
            lock.release()

    def _bind(self, session: Any) -> None:
        files = {"control": "ctl", "pub": "pub", "pull": "pull"}
        local = {name: [session.ipc(f)] if HAS_IPC else ["tcp://127.0.0.1:*"] for name, f in files.items()}
        extra = tcp_endpoints(self.config.listen) if self.config.listen else {}
        wanted = {name: local[name] + ([extra[name]] if name in extra else []) for name in local}
        self.pull, self.endpoints["pull"] = sockets.pull(self.ctx, wanted["pull"])
        self.pub, self.endpoints["pub"] = sockets.xpub(self.ctx, wanted["pub"])
        self.router, self.endpoints["control"] = sockets.router(self.ctx, wanted["control"])
        session.write_info(
            {"pid": os.getpid(), "run": self.run_id, "version": __version__, "started": self.started, **self.endpoints}
        )

    def _loop(self, wake: SignalWake | None) -> None:
        poller = zmq.Poller()
        for sock in (self.pull, self.pub, self.router):
            poller.register(sock, zmq.POLLIN)
        poller.register(self._inbox.fileno(), zmq.POLLIN)
        if wake:
            poller.register(wake.fileno(), zmq.POLLIN)
        while True:
            self._tick()  # first: deadlines due, and "everything has exited" before any wait
            if self._done:
                return
            ready = dict(poller.poll(self._timeout_ms()))
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

    def _timeout_ms(self) -> int:
        deadlines = [c.exit_deadline for c in self.children.values() if c.exit_deadline is not None]
        if self._stop_deadline is not None and self._killed_at is None:
            deadlines.append(self._stop_deadline)
        if self._killed_at is not None:
            deadlines.append(self._killed_at + KILL_WAIT)
        if not deadlines:
            return -1
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.exit_deadline is not None and (now >= child.exit_deadline or self._flushed(child)):
                self._publish_exit(child)
        if self._stop_deadline is not None and self._killed_at is None and now >= self._stop_deadline:
            self._killed_at = now
            for child in self.children.values():
                if child.state in ALIVE:
                    child.kill_group()
        waiting = [c for c in self.children.values() if c.state not in FINAL]
        if not waiting:
            if self.config.exit_when_done and not self.stop_reason:
                self.stop_reason = "all engines exited"
            self._done = bool(self.stop_reason)
        elif self._killed_at is not None and now >= self._killed_at + KILL_WAIT:
            self._done = True  # something survived SIGKILL (uninterruptible sleep): stop waiting

    @staticmethod
    def _flushed(child: Child) -> bool:
        """All of an exited child's output is in: pipes closed and the SDK said bye."""
        return not child.open_streams and child.bye

    def stop(self, reason: str, *, signum: int | None = None) -> None:
        """Begin a graceful stop; a second stop by signal kills at once."""
        if self.stop_reason:
            if signum is not None and self._killed_at is None:
                self._stop_deadline = time.monotonic()  # impatient user: SIGKILL on this tick
            return
        self.stop_reason, self._stop_signal = reason, signum
        self._stop_deadline = time.monotonic() + self.config.stop_timeout
        for child in self.children.values():
            if child.state in ALIVE:
                self._move(child, Trigger.STOP, reason)
                child.terminate_group()
            elif child.state is State.PENDING:
                self._move(child, Trigger.STOP, reason)

    def exit_code(self) -> int:
        decider = self.children[self.config.exit_code_from] if self.config.exit_code_from else None
        return run_exit_code(self.children.values(), stop_signal=self._stop_signal, stop_reason=self.stop_reason, decider=decider)

    # -- children --------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        env = engine_env(child.spec, endpoint=self.endpoints["pull"][0], session_dir=str(self.session.dir))
        try:
            child.spawn(env, self._inbox, self.config.max_line)
        except OSError as exc:
            child.spawn_error = spawn_error(child, exc)
            child.pid = None
            self._move(child, Trigger.SPAWN_FAILED, child.spawn_error)
            return
        self._move(child, Trigger.SPAWN, f"pid {child.pid}")

    def _move(self, child: Child, trigger: Trigger, reason: str = "") -> None:
        prev = child.state
        child.state = next_state(child.name, prev, trigger)
        self._publish(EngineState(engine=child.name, state=str(child.state), prev=str(prev), pid=child.pid, reason=reason))

    def _drain_inbox(self) -> None:
        for item in self._inbox.drain():
            tag, child = item[0], item[1]
            if tag == "line":
                self._on_line(child, *item[2:])
            elif tag == "eof":
                child.open_streams.discard(item[2])
            elif tag == "exit":
                child.exit = exit_info(item[2], item[3])
                child.exit_deadline = time.monotonic() + self.config.drain_grace

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
                self._track(child, event)
                self._publish(event)
                return
        if cut:
            text = f"{text[: MAX_TEXT - 64]} [... {cut} more bytes cut]"
        self._publish(Log(engine=child.name, ts=ts, message=text, stream=stream))

    def _check_bye(self, child: Child, bye: Any) -> None:
        """Make losses visible: what the engine says it sent against what came."""
        lost = bye.sent - (child.run_events - 1)  # run_events counts the bye itself
        if lost > 0:
            child.lost += lost
            self._note(child, "error", f"{lost} event(s) this engine sent never arrived")
        if bye.dropped:
            child.dropped += bye.dropped
            self._note(child, "warning", f"the engine dropped {bye.dropped} event(s) (progress, screenshots, heartbeats) because the bus did not keep up")

    def _note(self, child: Child, level: str, message: str) -> None:
        self._publish(Log(engine=child.name, message=f"bus: {message}", level=level, stream="bus"))

    def _publish_exit(self, child: Child) -> None:
        info = child.exit
        assert info is not None
        child.exit_deadline = None
        if child.hello and not child.bye:
            self._note(child, "warning", "the engine ended without its final bye: the events it sent last may be missing")
        self._publish(
            EngineExited(
                engine=child.name,
                ts=info.at,
                pid=child.pid or 0,
                code=info.code,
                signal=info.signal,
                signame=info.signame,
                runtime=max(0.0, info.at - child.started),
            )
        )
        self._move(child, Trigger.EXIT, f"exit code {info.code}" if info.signal is None else f"killed by {info.signame}")

    def _kill_everything(self) -> None:
        """Last resort on the way out (also on errors): nothing may outlive us."""
        for child in self.children.values():
            child.kill_group()
            if child.proc is not None:
                try:
                    child.proc.wait(timeout=KILL_WAIT)
                except Exception:
                    pass

    # -- engine messages ----------------------------------------------------------

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
            self.counters["accepted"] += 1
            child.events += 1
            child.run_events += 1
            self._track(child, event)
            self._publish(event, frames[1:])
            if event.KIND == "bye":
                self._check_bye(child, event)

    def _track(self, child: Child, event: Event) -> None:
        """Keep what status shows: last phase, last progress, hello/bye."""
        child.last_event_ts = event.ts
        kind = event.KIND
        if kind == "hello":
            child.hello = True
        elif kind == "bye":
            child.bye = True
        elif kind in ("phase.start", "phase.done", "phase.error"):
            child.phase = event.phase  # type: ignore[attr-defined]
        elif kind == "progress":
            child.progress = {k: getattr(event, k) for k in ("phase", "done", "total", "pct", "detail")}

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
        self.history.append(Entry(self.gseq, numbered.KIND, numbered.engine, body, size))
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

    def _close(self, session: Any) -> None:
        for name in ("pull", "router", "pub"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close()
        self._inbox.close()
        try:
            session.info_file.unlink()
        except OSError:
            pass
