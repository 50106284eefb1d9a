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
import secrets
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from typing import IO, Any, Callable, Sequence

import zmq

from bus import exitcodes, sockets
from bus._version import __version__
from bus.protocol import Event, Log, RemoteProtocolError, SupervisorStarted, SupervisorStopped, Welcome
from bus.protocol.codec import batch_raws, decode_engine, encode, is_batch, pack_event_header, stamp_header, topic_of
from bus.errors import BusError
from bus.journal import Entry, JournalReader, disk_bytes, load_jobs
from bus.journal_writer import JournalWriter
from bus.keys import Gatekeeper
from bus.process import Inbox, OutputLines, ProcessExited, StreamClosed
from bus.runtime import HAS_IPC, Session, SessionLock, journal_path, local_session, tcp_endpoints

from . import control
from .blobs import BlobBudget
from .config import EngineSpec, SupervisorConfig
from .connections import Connections
from .fleet import Answer, Fleet, Output, Publish, StopAll
from .history import History
from .memory import Trimmer
from .outcome import Cause, run_exit_code
from .processes import Processes
from .queues import MAX_FINISHED, QueueSpec
from .replies import Readers, Replies
from .sources import source_of
from .timers import KILL_WAIT
from .wake import SignalWake
from .watchdog import Watchdog
from .work import Work

Sink = Callable[[Event], None]
_send, _SNDMORE = zmq.backend.Socket.send, zmq.SNDMORE
INGEST_BATCH = 1000  # engine events read (alone or in batches) before the others get a turn; the journal
                     # is handed what was published once per pass: counted in messages, a pass could hold a million
INBOX_BATCH = 64     # inbox items taken per pass at most (exits, ends of streams, blocks of lines)...
INBOX_LINES = 4096   # ... or fewer, once they held this many lines
INBOX_STEP = 8       # items taken from the inbox at a time
MAX_FRAMES = 8       # frames kept of one engine message; the rest are read and dropped (the message is rejected)
MAX_SOURCES = 100    # distinct reject sources status tracks; the rest count as "other"
MAX_ENGINES = 10_000  # engines (instances) one supervisor keeps, spawned ones included (a spawn past it is refused)
LATE_QUIET = 0.3     # after sup.stop, serve late subscribers until this long without requests
LATE_MAX = 5.0       # ... but no longer than this
MAX_SLEEP_MS = 60_000  # the loop wakes at least this often, whatever the timers say
RETRY_REPLIES_MS = 5   # while control replies wait for a full pipe, retry them this often
HOST_GRACE = 1.0       # the program that started us is gone (watch_host): engines get this long, then SIGKILL
ENDED_STATES = frozenset({"backoff", "exited", "fatal", "lost"})  # an instance in one of these runs no job (work.gone)


_WORK_KINDS = frozenset({"job.end", "state"})  # (Publish outputs _do hands to _work_event)


class HostGone:
    """The pipe from the program that started this supervisor closed (it exited, crashed or was killed)."""


class Supervisor:
    def __init__(self, config: SupervisorConfig, *, ctx: zmq.Context, sinks: Sequence[Sink] = ()) -> None:
        self.config = config
        self.ctx = ctx
        self.sinks = list(sinks)
        self.after_pass: list[Callable[[], None]] = []  # called after each pass of the loop (a display flushes what it buffered)
        self.run_id = uuid.uuid4().hex[:16]
        self._inbox = Inbox()
        self.fleet = Fleet(config)  # decides; this loop does (publishes what it says, starts what it asks through processes)
        self.processes: Processes | None = None
        self.children = self.fleet.children
        self.history = History(config.history_events, config.history_bytes)
        self.blobs = BlobBudget()  # the screenshot bytes libzmq holds for subscribers, bounded
        self.gseq = 0
        self.started = time.time()
        self.token = secrets.token_hex(16)  # supervisor.json's owner token (what `spawn` over local TCP must show)
        self.endpoints: dict[str, list[str]] = {}
        self.counters = {"received": 0, "rejected": 0, "published": 0}  # (what the fleet took: fleet.accepted, fleet.lines)
        self.internal_errors = 0  # bugs of ours that a message or request reached (each said on stderr)
        self.received_kinds: dict[str, int] = {}   # engine events decoded, by kind (status `kinds`; rejects by reason apart)
        self.published_kinds: dict[str, int] = {}  # events published, by kind
        self.relay_lag = 0.0  # seconds from an engine's emit (its ts) to our taking it: the last engine event of the latest pass that took one
        self._newest_ts = 0.0  # the ts of the last engine event this pass took (0: none)
        self.rejects: dict[str, int] = {}
        self.reject_sources: dict[str, dict[str, int]] = {}  # who sent what was rejected, by reason
        self.gatekeeper: Gatekeeper | None = None
        self.readers = Readers()  # subscribers that say how far they are
        self.connections = Connections(say=self._say)  # who is connected to each socket; the bound on TCP connections
        self.stop_reason = ""
        self.stop_cause: Cause | None = None
        self.journal: JournalWriter | None = None
        self._unjournaled: list[Entry] = []  # handed to the journal once per loop pass
        self._journal_told = False  # its failure has been said
        self._notes: deque[str] = deque()  # helper threads' notes, for the loop to publish
        self._trimmer = Trimmer()
        self._reader: JournalReader | None = None
        self.finished = False  # sup.stop is out: only late subscribers are served
        self._stop_signal: int | None = None
        self._done = False
        self._host_gone = False  # (watch_host) no subscriber is left to serve after the run
        self.work: Work | None = None  # work queues (supervisor/work.py): made once control is bound

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
                {"pid": os.getpid(), "run": self.run_id, "version": __version__, "started": self.started, "token": self.token,
                 "watchdog": watchdog.proc.pid if watchdog is not None and watchdog.proc is not None else None, **self.endpoints}
            )
            spools = session.dir / "spool"
            spools.mkdir(mode=0o700, exist_ok=True)
            for stale in spools.iterdir():  # left by a supervisor that was killed; we hold the session lock
                stale.unlink(missing_ok=True)
            self.processes = Processes(self._inbox, self.config.max_line, watchdog)
            self.fleet.open(self.processes, endpoint=self.endpoints["pull"][0], session_dir=str(session.dir), spool_dir=spools, control=self.endpoints["control"][0])
            wake = SignalWake() if handle_signals else None
            try:
                self._publish(SupervisorStarted(run=self.run_id, pid=os.getpid(), version=__version__, engines=list(self.children)))
                if watchdog is not None and watchdog.broken:
                    self._publish(Log(message=f"bus: engines may outlive a killed supervisor: {watchdog.broken}", level="warning", stream="bus"))
                if self.config.exposed:
                    self._publish(Log(message=f"bus: INSECURE: listening on {self.config.listen} without keys: anyone who reaches it can read every event and stop engines (see docs/SECURITY.md)", level="warning", stream="bus"))
                self._restore_jobs()
                self.fleet.start_all()
                self._begin()
                self._loop(wake)
                if self.work is not None:
                    self.work.close()  # what is still held (a take, a `job` wait) is answered now: nobody waits for a supervisor that is gone
                    self.replies.flush()
            finally:
                if wake:
                    wake.close()
                self._end()
                if self.processes is not None:
                    self.processes.kill_all(KILL_WAIT)  # nothing may outlive us (also on errors)
                self.fleet.kill_everything()
                if self.processes is not None:
                    self.processes.close()
            self.flush_journal()  # a journal that failed is known, and said, before the run's exit code
            code = self.exit_code()
            self._publish(SupervisorStopped(code=code, reason=self.stop_reason))
            self._hand_to_journal()
            if self.journal is not None:
                self.journal.end_run(self.run_id, time.time(), code)
            self.finished = True
            self._serve_late_subscribers()
            return code
        finally:
            if watchdog is not None:
                watchdog.close()
            self._hand_to_journal()  # also when the loop ended by an error: what was published is kept
            if self.journal is not None:
                self.journal.close()
            self._close(session)
            lock.release()

    def watch_host(self, stream: IO[bytes]) -> None:
        """Stop, fast, when `stream` ends: a pipe whose other end only the program that
        started us holds (bus.app), so it ends when that program exits, crashes or is
        SIGKILLed. Engines get HOST_GRACE to stop, then SIGKILL; nobody is left to serve."""

        fd = stream.fileno()

        def wait() -> None:  # (os.read, not stream.read: a daemon thread in a buffered read aborts the interpreter's exit)
            try:
                while os.read(fd, 4096):
                    pass
            except OSError:
                pass
            self._inbox.put(HostGone())

        threading.Thread(target=wait, name="bus-host", daemon=True).start()

    def _open_journal(self, session: Session) -> None:
        if not self.config.journal:
            return
        path = journal_path(session)
        # A disk that falls far behind makes the loop wait (backpressure), never lose;
        # one that fails stops the journal, and that is said at once (_hand_to_journal).
        try:
            self.journal = JournalWriter(path, max_bytes=self.config.journal_max_bytes, max_age=self.config.journal_max_age, say=self._say)
        except OSError as exc:
            raise BusError(f"cannot create the journal {path}: {exc.strerror or exc}: set BUS_STATE_DIR to a writable directory, or use --no-journal") from None
        if self.journal.error:
            raise BusError(f"{self.journal.error}: set BUS_STATE_DIR to a writable directory, or use --no-journal")
        self.journal.begin_run(self.run_id, self.started, os.getpid())

    def _restore_jobs(self) -> None:
        """Take back the jobs an earlier supervisor of this session left in the journal (killed, or stopped with work queued)."""
        if self.journal is None or self.journal.error or self.work is None:
            return
        try:
            rows, done = load_jobs(self.journal.path, done_limit=MAX_FINISHED)
        except Exception as exc:  # noqa: BLE001 - a damaged table: said, the run goes on without them
            self._publish(Log(message=f"bus: could not take back the queued jobs of the journal {self.journal.path}: {exc}", level="error", stream="bus"))
            return
        if not rows:
            return
        lost = self.work.restore(rows, done)
        waiting = sum(1 for row in rows if row[2] in ("queued", "running"))
        if not waiting:
            return
        self._publish(Log(message=f"bus: took back {waiting:,} unfinished job(s) from the journal ({len(lost):,} were running when the last supervisor ended: "
                                  f"queued again first, with their attempt counted)", level="info", stream="bus"))

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
        remote = {name: [extra[name]] if name in extra else [] for name in local}
        security = self.config.security
        if security is not None and extra:
            self.gatekeeper = Gatekeeper(self.ctx, security)
        # Without ipc the local endpoints are TCP ports listed in supervisor.json; those of a supervisor of this
        # session that was killed are taken again when free, so its clients (which reconnect by themselves) find us.
        previous = {} if HAS_IPC else (session.read_info() or {})
        for name, make in (("pull", sockets.pull), ("pub", sockets.xpub), ("control", sockets.router)):
            sock, self.endpoints[name] = self._bind_local(make, previous.get(name) or [], local[name], remote[name], security)
            setattr(self, "router" if name == "control" else name, sock)
        self.replies = Replies(self.router, lambda body, who, envelope: control.guarded_answer(self, body, who, envelope), lost=self._reply_lost)
        self.work = Work(self.config.queue_specs(), self.run_id, publish=self._publish, deliver=self.replies.deliver)
        self.connections.plan(engines=sum(spec.instances for spec in self.config.engines), tcp_sockets=len(extra))
        for name, sock in (("pull", self.pull), ("pub", self.pub), ("control", self.router)):
            self.connections.watch(name, sock, self.endpoints[name])
        self.connections.start()

    def _bind_local(self, make: Any, previous: list[str], local: list[str], remote: list[str], security: Any) -> tuple[zmq.Socket, list[str]]:
        if previous and previous[0].startswith("tcp://127.0.0.1:") and not HAS_IPC:
            try:
                return make(self.ctx, previous[:1], remote, security=security)
            except zmq.ZMQError:
                pass  # (taken by now: a free port, as the first time)
        return make(self.ctx, local, remote, security=security)

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
            timeout = MAX_SLEEP_MS if next_due is None else min(MAX_SLEEP_MS, max(0, int((next_due - time.monotonic()) * 1000) + 1))
            if self.replies.waiting:
                timeout = min(timeout, RETRY_REPLIES_MS)
            ready = dict(poller.poll(timeout))
            if wake and wake.fileno() in ready:
                for signum in wake.signals():
                    self.stop(f"signal {signal.Signals(signum).name}", Cause.SIGNAL, signum=signum)
            if self.pull in ready:
                self._ingest()
                if self._newest_ts:  # (once per pass, not per event; a remote engine's clock may be ahead: never below 0)
                    self.relay_lag, self._newest_ts = max(0.0, time.time() - self._newest_ts), 0.0
            if self._inbox.fileno() in ready:
                self._drain_inbox()
            if self.pub in ready:
                self._welcome()
            if self.replies.waiting:
                self.replies.flush()
            if self.router in ready:
                control.serve(self)
            self._hand_to_journal()
            self._after_pass()

    def _after_pass(self) -> None:
        for hook in self.after_pass:
            try:
                hook()
            except Exception as exc:  # a bug of ours (or a display whose output broke): said, the loop goes on
                self._internal_error("the end of a pass of the loop", exc)

    def _begin(self) -> None:
        """Everything is bound and started; the loop comes next (a hub starts following here)."""

    def _end(self) -> None:
        """The loop is over (a hub stops following here)."""

    def flush_journal(self) -> None:
        """Everything published so far is on disk when this returns (or the journal failed, and that was said)."""
        self._hand_to_journal()
        if self.journal is not None:
            self.journal.flush()
            self._hand_to_journal()

    def _hand_to_journal(self) -> None:
        if self._unjournaled:
            batch, self._unjournaled = self._unjournaled, []
            if self.journal is not None:
                self.journal.append_many(self.run_id, batch)
        if self.work is not None:
            rows = self.work.rows()  # (after the events: a job's row is never ahead of its events)
            if rows and self.journal is not None and not self.journal.error:
                self.journal.append_jobs(rows)
        if self.journal is not None and self.journal.error and not self._journal_told:
            self._journal_told = True
            self._unjournaled.clear()
            kept = f"the newest {self.config.history_events:,} events or {self.config.history_bytes >> 20} MiB"
            self._publish(Log(message=f"bus: {self.journal.error}; later events are kept in memory only ({kept}), not on disk for `bus tail --run` later", level="error", stream="bus"))

    def _say(self, message: str) -> None:
        """A helper thread's note (the journal, connections), published by the loop. It never
        waits (the inbox may be full while the loop waits for that very thread)."""
        self._notes.append(message)
        self._inbox.wake()

    def _tell_notes(self) -> None:
        while self._notes:
            self._publish(Log(message=self._notes.popleft(), level="warning", stream="bus"))

    def journal_status(self) -> dict[str, Any]:
        journal = self.journal
        if journal is None:
            return {"state": "off"}
        return {"state": "failed" if journal.error else "ok", "path": str(journal.path), "written": journal.written, "error": journal.error or None, "stopped_after": journal.stopped_after,
                "bytes": disk_bytes(journal.path)}

    def _tick(self) -> float | None:
        now = time.monotonic()
        self._trimmer.maybe(now)
        try:
            outputs, next_due = self.fleet.tick(now)
            self._do(outputs)
            if self.work is not None:
                due = self.work.tick(now)
                if due is not None:
                    next_due = due if next_due is None else min(next_due, due)
        except Exception as exc:  # a bug of ours in a timer: said, and tried again in a second (never a spin)
            self._internal_error("the engines' timers", exc)
            next_due = now + 1.0
        if self.fleet.all_final():
            if self.config.exit_when_done and not self.stop_reason:
                self.stop_reason, self.stop_cause = "all engines exited", Cause.DONE
            self._done = bool(self.stop_reason)
        elif self.stop_reason and self.fleet.stuck(now):
            self._done = True  # something survived SIGKILL (uninterruptible sleep): stop waiting
        return next_due

    def stop(self, reason: str, cause: Cause = Cause.REQUEST, *, signum: int | None = None) -> None:
        """Begin a graceful stop of everything; a second stop by signal kills at once."""
        if self.stop_reason:
            if signum is not None:
                self.fleet.kill_now()
            return
        self.stop_reason, self.stop_cause, self._stop_signal = reason, cause, signum
        if self.work is not None:
            self.work.drain()  # no job more is given out; running ones may finish within the stop timeout
        self._do(self.fleet.shutdown(reason))

    def _do(self, outputs: list[Output]) -> None:
        """What the fleet decided: publish, or record that the run stops (the fleet began stopping the engines)."""
        for out in outputs:
            try:
                if isinstance(out, Publish):
                    kind = out.event.KIND
                    if kind in _WORK_KINDS:
                        self._work_event(out.event)
                        continue
                    self._publish(out.event, out.blobs, out.raw)
                elif isinstance(out, StopAll) and not self.stop_reason:
                    self.stop_reason, self.stop_cause = out.reason, Cause.STOP_ALL
            except Exception as exc:  # a bug of ours (a sink, say): said; the outputs after it still go out
                self._internal_error(f"publishing {type(out).__name__}", exc)

    def _reply_lost(self, envelope: list[bytes], reply: list[Any]) -> None:
        """A reply queued for a peer that disconnected before it was sent (a take's jobs go back)."""
        if self.work is None:
            return
        try:
            self.work.lost(envelope, reply)
        except Exception as exc:  # a bug of ours: said, the loop goes on
            self._internal_error("a lost control reply", exc)

    def _work_event(self, event: Any) -> None:
        """What the work queues must know of: an engine's job.end (published as job.done, failed or dead), and an instance's end."""
        if event.KIND == "job.end":
            if self.work is None:
                return
            try:
                self.work.end(event.engine, event.job, event.ok, event.result, event.error, event.retry, event.started)
            except RemoteProtocolError as exc:
                self._count_reject_from(exc.reason, event.engine)
            return
        self._publish(event)
        if event.state in ENDED_STATES and self.work is not None:
            self.work.gone(event.engine, f"its engine ended ({event.state}{': ' + event.ended if event.ended else ''})")

    # -- what control requests see (a hub adds its upstreams' engines) --------------------

    def engines_status(self, *, snapshot: bool = False) -> list[dict[str, Any]]:
        return [control.engine_status(c, snapshot=snapshot) for c in self.children.values()]

    def extra_status(self) -> dict[str, Any]:
        return {}

    spawns = True  # `spawn` may add engines (a hub: no)

    def spawn(self, spec: EngineSpec) -> list[str]:
        """Add an engine while running and start it now (past SPAWN_BATCH instances, in the next
        passes); its instance names. ValueError: a name is taken; OverflowError: too many engines."""
        if len(self.children) + spec.instances > MAX_ENGINES:
            raise OverflowError(f"this supervisor has {len(self.children):,} engines; {spec.instances} more would pass its bound of {MAX_ENGINES:,} (forget ended ones: bus forget NAME)")
        if spec.queue and self.work is not None and spec.queue not in self.work.queues.names:
            self.work.queues.add(spec.queue, QueueSpec())
        self._do(self.fleet.add(spec))
        outputs, _ = self.fleet.tick()  # started now, so the answer can say whether it could be
        self._do(outputs)
        return spec.instance_names()

    def forget(self, name: str) -> list[str]:
        """Forget an ended spawned engine (or instance): the names forgotten. LookupError: none;
        ValueError: not ended; PermissionError: not spawned (a config engine makes the exit code)."""
        names = [child.name for child in self.fleet.select(name)]
        if not all(self.fleet.added(n) for n in names):
            raise PermissionError(f"engine {name!r} was not spawned (it is from the config, or remote): it is kept, a config engine makes the exit code")
        self.fleet.forget(name)
        return names

    def command(self, op: str, name: str) -> dict[str, Answer]:
        """start, stop or restart an engine (or instance) by name; LookupError if there is none."""
        answers, outputs = getattr(self.fleet, op)(name)
        self._do(outputs)
        return answers  # type: ignore[no-any-return]

    def exit_code(self) -> int:
        decider = self.children[self.config.exit_code_from] if self.config.exit_code_from else None
        code = run_exit_code([c for c in self.children.values() if not c.remote], stop_signal=self._stop_signal, cause=self.stop_cause, decider=decider)
        if code == exitcodes.OK and self.journal is not None and self.journal.error:
            return exitcodes.ENGINE_FAILED  # events were lost from the record on disk
        return code

    def _serve_late_subscribers(self) -> None:
        """After sup.stop, still welcome subscribers and answer their history
        requests until things are quiet, so one that connected near the end (or
        was waiting for a short run) still gets the whole run. Subscribers that
        said they are behind (`hello` with `at`, not `done`) are waited for up to
        `serve_after` seconds: a partition at the end of a run costs them nothing."""
        poller = zmq.Poller()
        poller.register(self.pub, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)
        ended = heard = time.monotonic()
        told = False
        if self._host_gone:
            return
        if not self.readers.behind(self.gseq, ended, self.config.serve_after) and not self.replies.waiting and not self.connections.connected("pub", "control"):
            return  # nobody is there to serve (one who comes later reads the journal)
        while True:
            now = time.monotonic()
            behind = self.readers.behind(self.gseq, now, self.config.serve_after)
            if now >= ended + (self.config.serve_after if behind else LATE_MAX) or (not behind and not self.replies.waiting and now - heard >= LATE_QUIET):
                return
            if behind and not told:
                told = True
                print(f"bus: the run is over; waiting up to {self.config.serve_after:g}s for {len(behind)} subscriber(s) still behind "
                      f"(at event {min(behind)} of {self.gseq})", file=sys.stderr, flush=True)
            ready = dict(poller.poll(RETRY_REPLIES_MS if self.replies.waiting else int(LATE_QUIET * 1000)))
            if ready:
                heard = time.monotonic()
            if self.replies.waiting:
                self.replies.flush()
            if self.pub in ready:
                self._welcome()
            if self.router in ready:
                control.serve(self)

    # -- what engines send ------------------------------------------------------------

    def _ingest(self) -> None:
        """Read up to INGEST_BATCH engine events. libzmq's PULL takes them from its
        connections in turn (fair queuing), so one flooding peer cannot starve the others."""
        pull = self.pull
        counters = self.counters
        until = counters["received"] + INGEST_BATCH
        while counters["received"] < until:  # (counted in events: a batch holds up to 1,024)
            try:
                frames = [pull.recv(zmq.NOBLOCK, copy=False)]
            except zmq.Again:
                return
            extra = 0
            while pull.getsockopt(zmq.RCVMORE):
                frame = pull.recv(copy=False)
                if len(frames) < MAX_FRAMES:
                    frames.append(frame)
                else:
                    extra += 1  # read and dropped: a message cannot grow our memory by its frame count
            try:
                head = frames[0].buffer  # (a batch is read in place: no copy of its frame)
                if is_batch(head) and not extra:
                    self._take_batch(head, frames)
                    continue
                self.counters["received"] += 1
                self._take(frames[0].bytes, frames, extra)
            except RemoteProtocolError as exc:
                self._count_reject(exc.reason, frames[0])
            except Exception as exc:  # a bug of ours that this message reached: counted and said, never fatal
                self._count_reject("internal-error", frames[0])
                self._internal_error("an engine message", exc)

    def _take_batch(self, first: memoryview, frames: list[zmq.Frame]) -> None:
        """A batch (docs/PROTOCOL.md section 3): each event in it as if it came alone, in order;
        one that is rejected is counted, and the others still count."""
        if len(frames) > 1:
            self.counters["received"] += 1
            raise RemoteProtocolError(f"a batch is one frame, this message has {len(frames)}", reason="bad-frames")
        try:
            headers = batch_raws(first)  # (each copied out as it is taken, not all at once)
        except RemoteProtocolError:
            self.counters["received"] += 1
            raise
        self.counters["received"] += len(headers)
        for header in headers:
            try:
                self._take(bytes(header), frames, 0)
            except RemoteProtocolError as exc:
                self._count_reject(exc.reason, frames[0])
            except Exception as exc:  # noqa: BLE001 - as in _ingest
                self._count_reject("internal-error", frames[0])
                self._internal_error("an event of an engine's batch", exc)

    def _take(self, header: bytes, frames: list[zmq.Frame], extra: int) -> None:
        """One engine message (`header`, then frames[1:]): decode, check who may say it, publish.
        RemoteProtocolError: rejected."""
        if extra:
            raise RemoteProtocolError(f"message has {MAX_FRAMES + extra} frames, more than {MAX_FRAMES}", reason="bad-frames")
        event, raw = decode_engine([header, *(f.buffer for f in frames[1:])])
        kinds, kind = self.received_kinds, event.KIND
        kinds[kind] = kinds.get(kind, 0) + 1
        self._newest_ts = event.ts
        via = source_of(frames[0], self.gatekeeper) if event.KIND == "hello" else ""  # (a hello may attach a remote engine)
        self._do(self.fleet.engine_event(event, frames[1:], raw, via))

    def _internal_error(self, what: str, exc: Exception) -> None:
        """Say a bug loudly (stderr with its traceback, and a `bus` log), then carry on."""
        self.internal_errors += 1
        trace = "".join(traceback.format_exception(exc)).rstrip()
        print(f"bus supervisor: internal error while handling {what} (please report it):\n{trace}", file=sys.stderr, flush=True)
        try:
            self._publish(Log(message=f"bus: internal error while handling {what}: {type(exc).__name__}: {exc} (see the supervisor's stderr)", level="error", stream="bus"))
        except Exception:  # noqa: BLE001 - the note itself failed (a broken sink): stderr has it
            pass

    def _count_reject(self, reason: str, frame: zmq.Frame) -> None:
        """Count a rejected message by reason and by who sent it: the CURVE key's
        name, the TCP peer's address, or "local" (ipc)."""
        self._count_reject_from(reason, source_of(frame, self.gatekeeper))

    def _count_reject_from(self, reason: str, source: str) -> None:
        self.counters["rejected"] += 1
        self.rejects[reason] = self.rejects.get(reason, 0) + 1
        if source not in self.reject_sources and len(self.reject_sources) >= MAX_SOURCES:
            source = "other"
        counts = self.reject_sources.setdefault(source, {})
        counts[reason] = counts.get(reason, 0) + 1

    def _drain_inbox(self) -> None:
        """Take up to INBOX_BATCH items, or fewer once they held INBOX_LINES lines (a block
        of lines holds up to a pipe read's worth), so the other sockets get their turn."""
        self._tell_notes()
        taken = lines = 0
        while taken < INBOX_BATCH and lines < INBOX_LINES:
            items = self._inbox.drain(INBOX_STEP)
            if not items:
                return
            taken += len(items)
            for item in items:
                try:
                    if isinstance(item, OutputLines):
                        lines += len(item.lines)
                    self._inbox_item(item)
                except Exception as exc:  # a bug of ours that an engine's output or exit reached: said, never fatal
                    self._internal_error(f"{type(item).__name__} of an engine", exc)

    def _inbox_item(self, item: object) -> None:
        """One thing a helper thread saw: an engine's output lines, the end of a stream, an exit."""
        if isinstance(item, OutputLines):  # what one read of a pipe held (supervisor/pump.py, or a reader thread's one line)
            self._do(self.fleet.output(item.source, item.stream, item.lines))  # type: ignore[arg-type]
        elif isinstance(item, StreamClosed):
            self.fleet.stream_closed(item.source, item.stream)  # type: ignore[arg-type]
        elif isinstance(item, ProcessExited):
            self.fleet.exited(item.source, item.code, item.at)  # type: ignore[arg-type]
        elif isinstance(item, HostGone):
            self._host_gone = True
            try:
                self.stop("the program that started this supervisor is gone", Cause.DOWN)
            finally:
                self.fleet.kill_now(after=HOST_GRACE)  # (whatever the stop did: nothing outlives the host by more)

    # -- publishing --------------------------------------------------------------

    def _publish(self, event: Event, blobs: Sequence[Any] | None = None, raw: bytes | None = None) -> None:
        """Number, send, keep. `raw`: the engine's own header, to be sent as it came plus
        `gseq` (codec.decode_engine said it may be); else the event is encoded afresh."""
        self.gseq += 1
        gseq = self.gseq
        numbered = event.stamped(gseq) if self.sinks else event  # sinks see gseq; observe gets it apart
        header = stamp_header(raw, gseq) if raw is not None else pack_event_header(event, gseq)
        if blobs is None:
            blobs = [getattr(event, name) for name in event.BLOB_FIELDS]
        pub = self.pub
        if blobs:
            if self.blobs.fits(blobs):  # (else subscribers fetch it from history: supervisor/blobs.py)
                _send(pub, topic_of(event), _SNDMORE)
                _send(pub, header, _SNDMORE)
                self.blobs.send(pub, blobs)  # screenshot frames go out as received, not copied, tracked
            body = [header, *blobs]
            size = sum(len(f) for f in body)
        else:
            _send(pub, topic_of(event), _SNDMORE)  # (pyzmq's own send, without the wrapper's checks: bytes only)
            _send(pub, header)
            body = [header]
            size = len(header)
        self.counters["published"] += 1
        kinds, kind = self.published_kinds, event.KIND
        kinds[kind] = kinds.get(kind, 0) + 1
        entry = Entry(gseq, kind, event.engine, event.ts, body, size)
        self.history.append(entry)
        if self.journal is not None and not self._journal_told:
            self._unjournaled.append(entry)
        self.fleet.observe(numbered, gseq)
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
        self.connections.close()
        for name in ("pull", "router", "pub"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close()
        if self.gatekeeper is not None:
            self.gatekeeper.stop()
        self._inbox.close()
        if self._reader is not None:
            self._reader.close()
        try:
            session.info_file.unlink()
        except OSError:
            pass
