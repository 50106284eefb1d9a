"""Taking work from a queue in an engine: `for job in eng.jobs(): ...` (docs/PROTOCOL.md section 10).

    with Engine() as eng:
        for job in eng.jobs():            # the queue its config names (BUS_QUEUE)
            with job:                     # an exception fails the job, and the loop goes on
                eng.progress(0, 1, detail=job.payload["path"])
                job.done({"tags": tag(job.payload["path"])})

How it works: the engine asks the supervisor's control socket for work only
when it is idle (`take`, with `credit` jobs at most, default 1), so it never
holds work it cannot start and nothing is pushed into a full pipe. The reply
holds the jobs it was given, or nothing (asked again) when `wait` passed. While
a job runs, every event the engine sends carries its id (`job`). Its end
(`job.end`: done with a result, or failed, retried or not) goes on the same
PUSH socket as its events, after them; a body that ends without saying is done
with an empty result. A job that fails by exception is also reported as an
`error` event.

Stopping: while `jobs()` runs, the stop signal (SIGTERM) no longer interrupts
the work: the current job finishes (within the supervisor's stop timeout, or
SIGKILL ends it and the job is queued again), then the loop ends. While the
engine waits for work, the signal ends the loop at once; so does a supervisor
that is shutting down (its reply says `stop`).
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from types import TracebackType
from typing import Any, ContextManager, Iterator, Protocol

import zmq

from bus import sockets
from bus.keys import client_keys
from bus.protocol import LocalProtocolError, RemoteProtocolError
from bus.protocol.control import decode_reply, encode_request


class Engine(Protocol):
    """What jobs() needs of the engine (engine/sdk.py's Engine; named here so that this module does not import it)."""

    name: str
    _job: Job | None

    @property
    def connected(self) -> bool: ...
    @property
    def closed(self) -> bool: ...

    def exception(self, exc: BaseException) -> Any: ...
    def _end_job(self, job: Job, **fields: Any) -> None: ...
    def waiting(self) -> ContextManager[Any]: ...


ANSWER_SLACK = 10.0  # seconds past `wait` before a take that got no answer is sent again (a supervisor that restarted)


class Job:
    """One job an engine was given: `id`, `queue`, `payload` (a map), `attempt` (1 the first time)."""

    def __init__(self, engine: Engine, id: str, queue: str, payload: dict[str, Any], attempt: int) -> None:
        self.id, self.queue, self.payload, self.attempt = id, queue, payload, attempt
        self._engine = engine
        self.ended = False

    def done(self, result: dict[str, Any] | None = None, **fields: Any) -> None:
        """The job is done; `result` (a map) is published in `job.done`."""
        self._end(ok=True, result={**(result or {}), **fields})

    def fail(self, error: str, *, retry: bool = True) -> None:
        """The job failed: queued again while attempts are left (`retry=False`: dead at once)."""
        self._end(ok=False, error=str(error) or "failed", retry=retry)

    def __enter__(self) -> Job:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None) -> bool:
        if isinstance(exc, Exception) and not self.ended:
            self._engine.exception(exc)  # (an error event, with the job's id)
            self.fail(f"{type(exc).__name__}: {exc}")
            return True  # the loop goes on with the next job
        return False

    def _end(self, **fields: Any) -> None:
        if self.ended:
            raise LocalProtocolError(f"job {self.id!r} has ended already")
        self.ended = True
        self._engine._end_job(self, **fields)

    def __repr__(self) -> str:
        return f"Job({self.id!r}, queue={self.queue!r}, attempt={self.attempt})"


class _Stop(Exception):
    """The stop signal came while the engine waited for work."""


def take_jobs(engine: Engine, queue: str | None, credit: int, wait: float) -> Iterator[Job]:
    queue = queue or os.environ.get("BUS_QUEUE") or ""
    control = os.environ.get("BUS_CONTROL") or ""
    if not queue:
        raise LocalProtocolError("jobs(): no queue: give the engine queue = \"NAME\" in its config (BUS_QUEUE), or call jobs(\"NAME\")")
    if not control or not engine.connected:
        raise LocalProtocolError("jobs(): no supervisor to take work from (BUS_CONTROL is not set): run this engine under `bus up` with queue = \"NAME\"")
    if credit < 1 or not 0 < wait <= 3600:
        raise LocalProtocolError(f"jobs(): credit must be >= 1 and wait in (0, 3600] seconds, got credit={credit}, wait={wait}")
    ctx = zmq.Context.instance()
    dealer = sockets.dealer(ctx, control, keys=client_keys() if control.startswith("tcp://") else None)
    state = {"waiting": False, "stop": False}
    old = _catch_stop(state)
    ids = itertools.count(1)
    given: list[Job] = []
    try:
        while not state["stop"]:
            try:
                given, stop = _ask(engine, dealer, ids, queue, credit, wait, state)
            except _Stop:
                return
            while given:
                job = given.pop(0)
                engine._job = job
                try:
                    yield job
                except GeneratorExit:  # the loop was left during this job (break, or an exception in its body)
                    if not job.ended and not engine.closed:
                        job.fail("the engine's loop over its jobs ended during this job", retry=True)
                    raise
                finally:
                    engine._job = None
                if not job.ended:  # the body ended without saying: done, with nothing to show
                    job.done()
                if state["stop"]:
                    return
            if stop:
                return
    finally:
        for job in given:  # given in the same take, not reached (the loop was left, or the stop signal came)
            if not engine.closed:
                job._end(ok=False, error="handed back unstarted", started=False)
        _restore(old)
        dealer.close(linger=0)


def _ask(engine: Engine, dealer: zmq.Socket, ids: Iterator[int], queue: str, credit: int, wait: float, state: dict[str, bool]) -> tuple[list[Job], bool]:
    """One take: the jobs given, and whether to stop. Waits (a `waiting()` for the heartbeat) until an answer."""
    with engine.waiting():
        state["waiting"] = True
        try:
            while True:
                if state["stop"]:
                    raise _Stop()
                rid = next(ids)
                dealer.send_multipart([b"", encode_request("take", rid, queue=queue, engine=engine.name, pid=os.getpid(), credit=credit, wait=wait)])
                deadline = time.monotonic() + wait + ANSWER_SLACK
                while (left := deadline - time.monotonic()) > 0:
                    if not dealer.poll(int(left * 1000) + 1):
                        continue
                    frames = dealer.recv_multipart()
                    try:
                        reply = decode_reply(frames[-1])
                    except RemoteProtocolError:
                        continue
                    if not reply["ok"]:
                        raise LocalProtocolError(f"jobs(): the supervisor refused to give work: {reply.get('error')} ({reply.get('code')})")
                    given = [Job(engine, j["id"], j.get("queue", queue), j.get("payload") or {}, int(j.get("attempt", 1))) for j in reply.get("jobs") or []]
                    if given or reply.get("stop") or reply.get("id") == rid:  # (jobs in a late answer to an earlier take are ours too)
                        return given, bool(reply.get("stop"))
        finally:
            state["waiting"] = False


# How a supervisor asks an engine to stop: SIGTERM; on Windows CTRL_BREAK_EVENT (SIGBREAK).
STOP_SIGNALS = [signal.SIGTERM] + ([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])


def exit_on_stop(signum: int, frame: Any) -> None:
    # Turn the stop signal into SystemExit so `with Engine()` blocks and finally
    # clauses run and the last events are flushed (the shell code for SIGTERM is 143).
    raise SystemExit(128 + signum)


def _catch_stop(state: dict[str, bool]) -> dict[int, Any]:
    """While jobs() runs, the stop signal lets the current job finish (it interrupts only a wait for work)."""
    old: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return old

    def on_stop(signum: int, frame: Any) -> None:
        state["stop"] = True
        if state["waiting"]:
            raise _Stop()

    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) in (exit_on_stop, signal.SIG_DFL):
            old[signum] = signal.signal(signum, on_stop)
    return old


def _restore(old: dict[int, Any]) -> None:
    if threading.current_thread() is threading.main_thread():
        for signum, handler in old.items():
            signal.signal(signum, handler)

