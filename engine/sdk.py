"""The engine SDK: what a worker process calls to report what it does.

    from bus.engine import Engine

    with Engine() as eng:               # name and endpoint from the environment
        with eng.phase("scan"):
            for i, url in enumerate(urls, 1):
                eng.progress(done=i, total=len(urls), detail=url)
        eng.screenshot(png_bytes, name="home.png")
        eng.result({"pages": len(urls)})

Under a supervisor (`BUS_ENDPOINT` and `BUS_ENGINE` set) events go out on a
PUSH socket. Without one, the engine still works: by default each event is
printed as a legacy `##PROGRESS:{json}` marker on stdout and log lines go to
stderr, so an old parent that parses stdout keeps working (`fallback="off"`
prints nothing).

Threads: every method may be called from any thread. A lock serialises the
sends (zmq sockets are not thread-safe) and keeps sequence numbers in send
order. Do not use an Engine across fork(): make a new one in the child.

Pressure: an emit never waits for long. If the supervisor does not keep up
(its queue holds `BUS_SNDHWM` messages), droppable kinds are dropped and
counted: by default progress (except a final 100%), screenshots and
heartbeats; choose among progress, screenshot, heartbeat, log and finding
with `droppable=` or `BUS_DROPPABLE` ("progress,log"; "none"). Other kinds
(phase changes, results, errors) wait up to `send_timeout` seconds, then are
dropped with a warning on stderr. The count goes out in a heartbeat soon
after (so `bus status` shows it while the engine runs) and in `bye`.
Closing waits at most `linger` seconds for the supervisor to take what is
queued, so a vanished supervisor never hangs it.

Crashes: when the supervisor gives it a spool file (BUS_SPOOL), every event is
also copied into that memory-mapped ring before it is handed to zmq, so a
SIGKILL cannot lose what was sent: the supervisor recovers it (bus/spool.py).

Environment: BUS_ENDPOINT, BUS_ENGINE, BUS_SPOOL, BUS_HEARTBEAT (set by the
supervisor; a remote engine, which no supervisor started, beats every 5 s
unless BUS_HEARTBEAT says otherwise, and its hello says how often, so the
supervisor can tell when it is gone); BUS_SERVER_KEY and BUS_KEY (CURVE keys
for a tcp:// endpoint); BUS_FALLBACK (markers|off), BUS_LINGER (s, default 3),
BUS_SEND_TIMEOUT (s, default 10), BUS_SNDHWM (messages, default 1000),
BUS_DROPPABLE (kinds, comma-separated), BUS_SPOOL_SIZE (bytes, default
4 MiB; 0 turns the spool off).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket as stdsocket
import sys
import threading
import time
import traceback as tb
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Iterable, Iterator

import zmq

from bus import sockets
from bus._version import __version__
from bus.protocol import (
    DROPPABLE_KINDS,
    MAY_BE_DROPPED,
    EngineBye,
    EngineError,
    EngineHello,
    Event,
    Finding,
    Heartbeat,
    JobEnd,
    LocalProtocolError,
    Log,
    PhaseCompleted,
    PhaseFailed,
    PhaseStarted,
    Progress,
    Result,
    Screenshot,
    encode,
)
from bus.errors import BusError
from bus.keys import client_keys
from bus.protocol.codec import pack as _pack, plain_progress
from bus.protocol.legacy import format_marker
from bus.protocol.limits import PROTOCOL_VERSION
from bus.runtime import tcp_address
from bus.spool import DEFAULT_SIZE, SpoolWriter

from .batch import BATCH_GAP, Batcher, send_now
from .jobs import STOP_SIGNALS, Job, exit_on_stop, take_jobs

TELL_DROPS_EVERY = 0.5  # seconds after a drop: a heartbeat saying how many (retried until there is room)
REMOTE_HEARTBEAT = 5.0  # seconds between heartbeats when no supervisor started us (BUS_HEARTBEAT unset)


class Engine:
    def __init__(
        self,
        name: str | None = None,
        *,
        endpoint: str | None = None,
        fallback: str | None = None,
        linger: float | None = None,
        send_timeout: float | None = None,
        heartbeat: float | None = None,
        handle_sigterm: bool = True,
        droppable: Iterable[str] | None = None,
    ) -> None:
        self.name = name or os.environ.get("BUS_ENGINE") or _default_name()
        endpoint = endpoint or os.environ.get("BUS_ENDPOINT") or None
        if endpoint is not None and not endpoint.startswith("ipc://"):
            try:
                tcp_address(endpoint, "BUS_ENDPOINT")  # checked before anything connects (zmq would only say EINVAL)
            except BusError as exc:
                raise LocalProtocolError(str(exc)) from None
        self.fallback = fallback or os.environ.get("BUS_FALLBACK", "markers")
        if self.fallback not in ("markers", "off"):
            raise LocalProtocolError(f"fallback must be 'markers' or 'off', got {self.fallback!r}")
        self._linger_ms = int(1000 * (linger if linger is not None else _env_float("BUS_LINGER", 3.0)))
        self._send_timeout_ms = int(1000 * (send_timeout if send_timeout is not None else _env_float("BUS_SEND_TIMEOUT", 10.0)))
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._forks = _forks  # (a fork() changes the module's count in the child: no getpid() per event)
        self._droppable = _droppable(droppable)
        self._seq = self._sent = self._dropped = self._dropped_told = 0
        self._dropped_kinds: dict[str, int] = {}
        self._active = False  # an event other than a heartbeat went out since the last beat (liveness)
        self._waiting = 0     # threads inside `waiting()`: the work is still on purpose
        self._work = threading.current_thread()  # whose stillness counts as the engine's
        self._tell_timer: threading.Timer | None = None
        self._stalled = False
        self._closed = False
        self._phase = ""
        self._phase_started: dict[str, float] = {}
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._spool: SpoolWriter | None = None
        self._batch: Batcher | None = None  # what a burst sends goes out in batches (batch.py)
        self._last_send = 0.0
        self._job: Job | None = None  # the job jobs() gave that runs now: what is sent meanwhile carries its id
        spool_path = os.environ.pop("BUS_SPOOL", None)  # ours alone: not for our own children
        if endpoint:
            self._ctx = zmq.Context()
            hwm = int(_env_float("BUS_SNDHWM", sockets.PUSH_HWM))
            keys = client_keys() if endpoint.startswith("tcp://") else None  # BUS_SERVER_KEY, BUS_KEY
            self._sock = sockets.push(self._ctx, endpoint, linger_ms=self._linger_ms, hwm=hwm, keys=keys)
            self._batch = Batcher(self._sock, hwm, self._got_through)
            if spool_path:
                self._spool = _open_spool(spool_path, self.name)
        # The stop signal's handler goes in before hello: once the supervisor has
        # heard from us it may stop us at any moment, and we must then say bye.
        self._old_handlers: dict[int, Any] = {}
        if handle_sigterm and threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is signal.SIG_DFL:
                    self._old_handlers[signum] = signal.signal(signum, exit_on_stop)
        self._beat_stop = threading.Event()
        atexit.register(self.close)
        # A supervisor that starts us says how often to beat (0: never). Without it
        # we are a remote engine, and the supervisor tells we are gone by our silence.
        interval = heartbeat if heartbeat is not None else _env_float("BUS_HEARTBEAT", REMOTE_HEARTBEAT if endpoint else 0.0)
        self._emit(EngineHello, pid=self._pid, sdk=f"bus-py/{__version__}", host=stdsocket.gethostname(), heartbeat=interval if interval > 0 and endpoint else None)
        if interval > 0:
            threading.Thread(target=self._beat, args=(interval,), name="bus-heartbeat", daemon=True).start()

    # -- what an engine reports ------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True when events go to a supervisor (not to the stdout fallback)."""
        return self._sock is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def jobs(self, queue: str | None = None, *, credit: int = 1, wait: float = 30.0) -> Iterator[Job]:
        """Jobs of `queue` (default: the one the engine's config names, BUS_QUEUE), one at a time,
        asked for when idle (at most `credit` held); see engine/jobs.py. Under a supervisor only."""
        return take_jobs(self, queue, credit, wait)

    def _end_job(self, job: Job, *, ok: bool, result: dict[str, Any] | None = None, error: str = "", retry: bool = True, started: bool = True) -> None:
        self._emit(JobEnd, job=job.id, ok=ok, result=result or {}, error=error, retry=retry, started=started)
        if self._batch is not None:
            self._batch.sent(self._send_timeout_ms / 1000)  # (out before the next take, which goes on the control socket)

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def dropped(self) -> int:
        return self._dropped

    def phase_start(self, phase: str, detail: str = "") -> None:
        with self._lock:
            self._phase = phase
            self._phase_started[phase] = time.monotonic()
            self._emit(PhaseStarted, phase=phase, detail=detail)

    def phase_done(self, phase: str | None = None, detail: str = "") -> None:
        with self._lock:
            phase = phase or self._phase
            started = self._phase_started.pop(phase, None)
            elapsed = time.monotonic() - started if started is not None else None
            self._emit(PhaseCompleted, phase=phase, elapsed=elapsed, detail=detail)

    def phase_error(self, phase: str | None, message: str) -> None:
        with self._lock:
            phase = phase or self._phase
            self._phase_started.pop(phase, None)
            self._emit(PhaseFailed, phase=phase, message=message)

    @contextmanager
    def phase(self, phase: str, detail: str = "") -> Iterator[None]:
        """Start a phase; done when the block ends, error if it raises."""
        self.phase_start(phase, detail)
        try:
            yield
        except BaseException as exc:
            self.phase_error(phase, f"{type(exc).__name__}: {exc}")
            raise
        self.phase_done(phase)

    def progress(
        self,
        done: float | None = None,
        total: float | None = None,
        *,
        pct: float | None = None,
        detail: str = "",
        phase: str | None = None,
    ) -> None:
        phase = self._phase if phase is None else phase
        if self._sock is None or not plain_progress(phase, done, total, pct, detail):
            self._emit(Progress, phase=phase, done=done, total=total, pct=pct, detail=detail)  # (says what is wrong)
            return
        # The hot call: checked inline and packed straight from a dict (the same
        # header the Progress event would make), several times cheaper than building it.
        if pct is None:
            if done is not None and total:
                pct = min(100.0, 100.0 * done / total)
        else:
            pct = float(pct)
        header = {"v": PROTOCOL_VERSION, "kind": "progress", "engine": self.name, "seq": 0, "ts": _now(), "phase": phase}
        if done is not None:
            header["done"] = done
        if total is not None:
            header["total"] = total
        if pct is not None:
            header["pct"] = pct
        header["detail"] = detail
        job = self._job
        if job is not None:
            header["job"] = job.id
        with self._lock:
            if self._closed or self._forks != _forks:
                self._refuse("progress")
            header["seq"] = seq = self._seq + 1
            if self._spool_send(seq, [_pack(header)], pct != 100.0 and "progress" in self._droppable, "progress", counted=True):
                self._active = True

    def log(self, message: str, level: str = "info") -> None:
        self._emit(Log, message=message, level=level, stream="engine")

    def screenshot(self, data: bytes, name: str = "screenshot.png", mime: str = "image/png") -> None:
        data = bytes(data) if not isinstance(data, bytes) else data  # never let the caller mutate it in flight
        self._emit(Screenshot, name=name, mime=mime, size=len(data), data=data)

    def finding(self, data: dict[str, Any] | None = None, **fields: Any) -> None:
        self._emit(Finding, data={**(data or {}), **fields})

    def result(self, summary: dict[str, Any] | None = None, **fields: Any) -> None:
        self._emit(Result, summary={**(summary or {}), **fields})

    def error(self, message: str, *, type: str = "", traceback: str = "", fatal: bool = False) -> None:
        self._emit(EngineError, message=message, type=type, traceback=traceback, fatal=fatal)

    def exception(self, exc: BaseException, *, fatal: bool = False) -> None:
        text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
        self.error(str(exc) or type(exc).__name__, type=type(exc).__name__, traceback=text, fatal=fatal)

    def heartbeat(self, *, idle: float = 0.0) -> None:
        """Say the engine is alive (`idle`: for how long its work has been still; see `waiting`)."""
        self._emit(Heartbeat, dropped=self._dropped, dropped_kinds=dict(self._dropped_kinds), idle=idle)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Mark an intentional wait (for a job, a long sleep, a slow server): the heartbeat
        does not count it as the engine's work being stuck (see `heartbeat_timeout`)."""
        with self._lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1

    # -- lifetime -------------------------------------------------------------------

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None) -> None:
        if isinstance(exc, Exception) and not self._closed:
            self.exception(exc, fatal=True)
            job = self._job
            if job is not None and not job.ended:  # it raised out of a jobs() loop: that job failed
                job.fail(f"{type(exc).__name__}: {exc}")
        self.close()

    def close(self) -> None:
        """Send bye, flush (at most `linger` seconds), release the socket. Idempotent."""
        with self._lock:
            if self._closed or os.getpid() != self._pid:
                return
            self._emit(EngineBye, sent=self._sent, dropped=self._dropped, dropped_kinds=dict(self._dropped_kinds))
            self._closed = True
            if self._tell_timer is not None:
                self._tell_timer.cancel()  # bye has told the count
        self._beat_stop.set()
        if self._spool is not None:
            self._spool.close()  # the file stays: the supervisor removes it
        if threading.current_thread() is threading.main_thread():
            for signum, old in self._old_handlers.items():
                signal.signal(signum, old)
        if self._sock is not None and self._ctx is not None:
            started = time.monotonic()
            if self._batch is not None:
                self._batch.close(self._linger_ms / 1000)  # what a burst left waiting goes first
                if self._batch.lost:
                    print(f"bus engine {self.name}: {self._batch.lost} event(s) were still waiting to be sent when "
                          f"the linger ({self._linger_ms / 1000:g}s, BUS_LINGER) ran out; they are lost", file=sys.stderr, flush=True)
            self._sock.close()  # keeps the socket's linger: queued events still go out
            self._ctx.term()    # returns once flushed, or when linger expires
            if self._linger_ms > 0 and time.monotonic() - started >= 0.95 * self._linger_ms / 1000:
                print(
                    f"bus engine {self.name}: the supervisor did not take the last events within "
                    f"{self._linger_ms / 1000:g}s (BUS_LINGER); they may be lost",
                    file=sys.stderr,
                    flush=True,
                )
        atexit.unregister(self.close)

    # -- sending --------------------------------------------------------------------

    def _emit(self, cls: type[Event], *, _only_if_room: bool = False, **fields: Any) -> None:
        """Make, spool and send one event. `_only_if_room`: send it if the queue has
        room, else forget it (not counted as a drop: the drop reports)."""
        with self._lock:
            if self._closed:
                raise LocalProtocolError(f"engine {self.name!r} is closed; {cls.KIND} not sent")
            if self._forks != _forks:
                raise LocalProtocolError("this Engine was made in another process; make a new Engine after fork()")
            if "job" not in fields and self._job is not None and cls not in _NO_JOB:
                fields["job"] = self._job.id
            event = cls(engine=self.name, seq=self._seq + 1, **fields)
            if self._sock is None:
                self._seq += 1
                self._print_fallback(event)
                return
            frames = encode(event)
            droppable = _only_if_room or (cls.KIND in self._droppable and not (cls is Progress and event.pct == 100.0))  # type: ignore[attr-defined]
            if self._spool_send(self._seq + 1, frames, droppable, cls.KIND, counted=not _only_if_room):
                if cls is Heartbeat:
                    self._dropped_told = max(self._dropped_told, fields.get("dropped", 0))
                else:
                    self._active = True  # work went out (a heartbeat is no sign of work)

    def _refuse(self, kind: str) -> None:
        if self._closed:
            raise LocalProtocolError(f"engine {self.name!r} is closed; {kind} not sent")
        raise LocalProtocolError("this Engine was made in another process; make a new Engine after fork()")

    def _spool_send(self, seq: int, frames: list[Any], droppable: bool, kind: str, *, counted: bool) -> bool:
        """Spool, then send, event number `seq` (under the lock); True if it went. Spool first:
        from there on a SIGKILL cannot lose it. What cannot go is dropped (`counted`: as a drop)."""
        spool = self._spool
        if spool is None:  # (no crash spool: a remote engine, or BUS_SPOOL_SIZE=0)
            if self._send(frames, droppable, kind):
                self._seq = seq
                self._sent += 1
                return True
            self._drop(kind, counted=counted)
            return False
        mark = spool.write(seq, frames)
        if mark is None:
            mark = self._spool_full(seq, frames, droppable, kind)
        if mark is not _FULL and self._send(frames, droppable, kind):
            self._seq = seq
            self._sent += 1
            return True
        if mark is not _FULL:
            spool.retract(mark)  # type: ignore[arg-type]  # not sent: its number goes to the next event
        self._drop(kind, counted=counted)
        return False

    def _spool_full(self, seq: int, frames: list[Any], droppable: bool, kind: str) -> int | object:
        """The crash spool holds only events the supervisor has not received yet: where this one
        went once there was room (for retract), or _FULL when it may be dropped, or waited
        `send_timeout` for room (a full send queue, in bytes)."""
        assert self._spool is not None
        if droppable or self._stalled:
            return _FULL
        deadline, pause = time.monotonic() + self._send_timeout_ms / 1000, 0.0002
        while time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(2 * pause, 0.005)
            mark = self._spool.write(seq, frames)
            if mark is not None:
                return mark
        self._stall(kind, "received nothing of the last events in its crash spool")
        return _FULL

    def _stall(self, kind: str, what: str) -> None:
        """Waiting `send_timeout` for room did not help: drop, and do not wait again until a send gets through."""
        self._stalled = True
        print(
            f"bus engine {self.name}: the supervisor {what} for {self._send_timeout_ms / 1000:g}s; "
            f"dropped a {kind!r} event (and will drop without waiting until it reads again)",
            file=sys.stderr,
            flush=True,
        )

    def _drop(self, kind: str, *, counted: bool) -> None:
        """An event that could not go: counted by kind (also in the spool, so a killed engine's last drops are known)."""
        if counted:
            self._dropped += 1
            self._dropped_kinds[kind] = self._dropped_kinds.get(kind, 0) + 1
            if self._spool is not None:
                self._spool.count_drop(kind)
        if self._tell_timer is None:
            self._tell_later()

    def _tell_later(self) -> None:
        self._tell_timer = threading.Timer(TELL_DROPS_EVERY, self._tell_drops)
        self._tell_timer.daemon = True
        self._tell_timer.start()

    def _tell_drops(self) -> None:
        """Say how many events were dropped, in a heartbeat, as soon as the queue has
        room again (never waiting for it: tried every TELL_DROPS_EVERY seconds)."""
        with self._lock:
            self._tell_timer = None
            if self._closed or self._dropped <= self._dropped_told:
                return
            self._emit(Heartbeat, _only_if_room=True, dropped=self._dropped, dropped_kinds=dict(self._dropped_kinds))
            if self._dropped > self._dropped_told and self._tell_timer is None:
                self._tell_later()

    def _got_through(self) -> None:
        self._stalled = False  # (the flusher's send got through: wait for room again)

    def _send(self, frames: list[Any], droppable: bool, kind: str) -> bool:
        """Hand one event to zmq (under the lock). An event that comes less than BATCH_GAP
        after the last send, or while a batch is on its way, joins the batch the flusher
        thread sends next; any other goes out at once, as it always did."""
        assert self._sock is not None and self._batch is not None
        now = _perf()
        idle = now - self._last_send >= BATCH_GAP
        self._last_send = now
        queued = self._batch.put(frames, droppable, self, kind, unless_idle=idle)
        if queued is not None:
            return queued
        try:
            send_now(self._sock, frames)
            self._stalled = False
            return True
        except zmq.Again:
            if droppable or self._stalled:
                return False
        # An event that must not be dropped silently: wait for room, bounded.
        deadline = time.monotonic() + self._send_timeout_ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            if self._sock.poll(int(left * 1000) + 1, zmq.POLLOUT):
                try:
                    send_now(self._sock, frames)
                    return True
                except zmq.Again:
                    continue
        self._stall(kind, "took nothing")
        return False

    def _print_fallback(self, event: Event) -> None:
        if self.fallback == "off":
            return
        if isinstance(event, Log):
            prefix = "" if event.level == "info" else event.level.upper() + ": "
            print(prefix + event.message, file=sys.stderr, flush=True)
            return
        line = format_marker(event)
        if line is not None:
            print(line, flush=True)

    def _beat(self, interval: float) -> None:
        """Beat every `interval` seconds, saying how long the work has been still: its
        thread used no CPU, sent nothing and was in no `waiting()` (a hung main thread
        shows, though this thread still runs)."""
        watch = _WorkWatch(self._work)
        while not self._beat_stop.wait(interval):
            active, self._active = self._active, False
            try:
                self.heartbeat(idle=watch.idle(active=active or self._waiting > 0))
            except LocalProtocolError:
                return  # closed meanwhile


_FULL = object()  # _spool_full: no room for it
_NO_JOB = (Heartbeat, EngineHello, EngineBye)  # kinds that never carry the running job's id
_now, _perf = time.time, time.perf_counter
_forks = 0  # fork()s this process came through (counted in the child)


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):  # (POSIX; Windows has no fork)
    os.register_at_fork(after_in_child=_forked)


class _WorkWatch:
    """How long a thread's work has been still, from its CPU clock (POSIX threads with
    per-thread clocks: Linux, the BSDs). Without one, or once the thread has ended,
    it is never still: only a frozen process, or the supervisor's idle_timeout, show then."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.clock: int | None = None
        try:
            if thread.ident is not None and thread.is_alive():
                self.clock = time.pthread_getcpuclockid(thread.ident)  # (only for a live thread: an expired id is undefined behaviour)
        except (AttributeError, OSError):  # pragma: no cover - no per-thread clocks here
            self.clock = None
        self.cpu = self._cpu()
        self.still_since = time.monotonic()

    def _cpu(self) -> int | None:
        if self.clock is None or not self.thread.is_alive():
            return None
        try:
            return time.clock_gettime_ns(self.clock)
        except OSError:
            return None

    def idle(self, *, active: bool) -> float:
        now, cpu = time.monotonic(), self._cpu()
        if active or cpu is None or cpu != self.cpu:
            self.still_since = now
        self.cpu = cpu
        return round(now - self.still_since, 3)


def _droppable(chosen: Iterable[str] | None) -> frozenset[str]:
    """The kinds this engine drops when its queue is full (argument, else BUS_DROPPABLE)."""
    if chosen is None:
        text = os.environ.get("BUS_DROPPABLE", "").strip()
        if not text:
            return DROPPABLE_KINDS
        chosen = [] if text == "none" else [k.strip() for k in text.split(",") if k.strip()]
    kinds = frozenset(chosen)
    if not kinds <= MAY_BE_DROPPED:
        wrong = ", ".join(sorted(kinds - MAY_BE_DROPPED))
        raise LocalProtocolError(
            f"droppable kinds must be among {', '.join(sorted(MAY_BE_DROPPED))}, got {wrong} "
            "(phase changes, results, errors, hello and bye are never dropped silently)"
        )
    return kinds


def _open_spool(path: str, name: str) -> SpoolWriter | None:
    size = int(_env_float("BUS_SPOOL_SIZE", DEFAULT_SIZE))
    if size <= 0:  # turned off: a little faster, but a SIGKILL may lose the last events
        return None
    try:
        return SpoolWriter(path, size)
    except FileExistsError:
        print(f"bus engine {name}: another process of this engine uses its crash spool already ({path}); this one has none: a SIGKILL may lose its last events", file=sys.stderr)
        return None
    except (OSError, ValueError) as exc:
        print(f"bus engine {name}: no crash spool at {path} ({exc}); a SIGKILL may lose the last events", file=sys.stderr)
        return None


def _default_name() -> str:
    base = os.path.splitext(os.path.basename(sys.argv[0] or "engine"))[0]
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in base).lstrip(".-") or "engine"
    return cleaned[:128]


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise LocalProtocolError(f"environment variable {name}={value!r} is not a number") from None
