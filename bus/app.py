"""Bus inside an application: start (or reach) a supervisor, spawn engines, follow each one.

    from bus.app import Bus

    with Bus.start() as bus:                      # a supervisor of this program's own
        audit = bus.spawn(["python", "audit_engine.py", "https://shop.example"])
        for event in audit.events():              # that engine's events only: in order, none lost
            print(event.kind)
        print(audit.wait().code)                  # its exit code (and .result, .signal, .state)

`bus.aio.AsyncBus` is the same for asyncio (uvicorn, FastAPI). `Bus(ADDRESS)`
connects to a running supervisor instead (a session name, a run directory, or
tcp://HOST:PORT with keys from the environment), e.g. the `bus up --keep`
daemon; `bus.handle(NAME)` follows an engine someone else started.

How it works: the API is a client of the same control and PUB sockets as the
command line (docs/PROTOCOL.md): `spawn` is the control request, and each
`events()` is a Subscriber of its own, filtered to the engine's instances, so
a late or second reader gets the engine's whole story from the history and
gaps are refilled as for any subscriber. A private supervisor (bus/hosted.py)
is a separate process that ends with this one, however this one ends.

The sync API may be used from several threads: requests take turns on one
control socket, and each `events()`/`wait()` opens its own subscription. No
signal handler is installed in the host program.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import zmq

from .catchup import ALL
from .control_client import ControlClient, RequestFailed
from .errors import BusError, NotRunning
from .hosted import HostedSupervisor
from .protocol import AnyEvent, EngineExited, EngineState, RemoteProtocolError, Result
from .protocol.codec import split_batch
from .runtime import Address, default_name, engine_name, resolve
from .subscriber import Subscriber
from .work_client import MAX_JOB_WAIT, JobTimeout, ended, job_wait, result_of, submit_all

__all__ = ["Bus", "Ended", "Handle", "engine_table"]

FINAL_STATES = frozenset({"exited", "fatal", "lost"})  # nothing more happens to the instance by itself
END_KINDS = (EngineState.KIND, EngineExited.KIND, Result.KIND, "sup.stop")
PRIVATE_DEFAULTS = {"journal": False}  # a private supervisor's events die with it (give journal=True and a session to keep them)


@dataclass(frozen=True, slots=True)
class Ended:
    """How a spawned engine ended. With several instances, `instances` holds each one's
    and the fields above say the worst: the first non-zero code, the first signal."""

    name: str
    state: str                   # exited, fatal, lost; "gone" when the supervisor ended first
    code: int | None = None      # exit status; None if a signal ended it or it never ran
    signal: str = ""             # "SIGKILL", ... if a signal ended it
    reason: str = ""             # the supervisor's words for the last state
    result: dict[str, Any] | None = None  # the summary of its last `result` event
    instances: tuple[Ended, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.signal and all(i.ok for i in self.instances)


@dataclass(slots=True)
class EndWatch:
    """Follows the events of an engine's instances to tell when they have all ended (pure).

    Events at or before `after` (the gseq before its spawn) are of an earlier engine of
    that name. An instance whose end a reader will never see (its last events left the
    history before the reader came, or it ended before a `history=0` reader) is ended by
    the supervisor's word instead (`settle`, from a snapshot taken while the reader had
    everything up to it), so nothing waits for ever."""

    name: str
    names: frozenset[str]
    after: int = 0
    states: dict[str, EngineState] = field(default_factory=dict)
    exits: dict[str, EngineExited] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    settled: dict[str, dict[str, Any]] = field(default_factory=dict)  # instance -> its snapshot entry
    gone: bool = False

    def take(self, event: AnyEvent) -> bool:
        """True if `event` is one of the engine's (to hand out)."""
        if event.kind == "sup.stop":
            self.gone = True
            return False
        if event.engine not in self.names or (event.gseq is not None and event.gseq <= self.after):
            return False
        if isinstance(event, EngineState):
            self.states[event.engine] = event
        elif isinstance(event, EngineExited):
            self.exits[event.engine] = event
        elif isinstance(event, Result):
            self.results[event.engine] = event
        return True

    def settle(self, snapshot: Mapping[str, Any], position: int) -> None:
        """`snapshot`: the supervisor's, taken when this reader had every event up to `position`."""
        if position < snapshot.get("last", 0):
            return  # events up to the snapshot are still on their way: they will tell
        now = {e["name"]: e for e in snapshot.get("engines", ())}
        for name in self.names - set(self.settled):
            entry = now.get(name)
            if entry is None:
                self.settled[name] = {"state": "gone", "reason": "the supervisor no longer knows it"}
            elif entry["state"] in FINAL_STATES and not self._final(name):
                self.settled[name] = entry

    def _final(self, name: str) -> bool:
        state = self.states.get(name)
        return state is not None and state.state in FINAL_STATES

    @property
    def done(self) -> bool:
        return self.gone or all(self._final(n) or n in self.settled for n in self.names)

    def ended(self) -> Ended:
        ends = tuple(self._one(n) for n in sorted(self.names))
        if len(ends) == 1:
            return ends[0]
        worst = next((e for e in ends if not e.ok), ends[0])
        return Ended(self.name, worst.state, worst.code, worst.signal, worst.reason, None, ends)

    def _one(self, name: str) -> Ended:
        if not self._final(name) and name in self.settled:
            entry = self.settled[name]
            exit_ = entry.get("exit") or {}
            return Ended(name, entry["state"], exit_.get("code"), exit_.get("signame") or "", entry.get("reason", ""), entry.get("result"))
        state, exit_, result = self.states.get(name), self.exits.get(name), self.results.get(name)
        return Ended(
            name, state.state if state is not None and self._final(name) else "gone",
            exit_.code if exit_ is not None else None, exit_.signame if exit_ is not None else "",
            state.reason if state is not None else "the supervisor ended first",
            dict(result.summary) if result is not None else None,
        )


QUIET_CHECK = 1.0  # seconds without an event of the engine before a handle asks whether its end was missed


def engine_table(command: Sequence[str] | str, *, local: bool, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                 shell: bool = False, **settings: Any) -> dict[str, Any]:
    """The `engine` of a spawn request: the keys of a TOML engine table (supervisor/config.py).
    A local supervisor is given this program's directory unless `cwd` says otherwise."""
    if isinstance(command, str) and not shell:
        raise BusError(f"command {command!r} is a string: give a list of words, or shell=True to run it with the shell")
    table: dict[str, Any] = {"command": command if isinstance(command, str) else [os.fspath(w) for w in command]}
    if shell:
        table["shell"] = True
    if cwd is not None or local:
        table["cwd"] = os.path.abspath(cwd if cwd is not None else ".")
    if env:
        table["env"] = dict(env)
    table.update({key: value for key, value in settings.items() if value is not None})
    return table


def spawn_name(name: str | None, command: Sequence[str] | str) -> str:
    """The name asked for (checked), else one made from the program's and unique enough."""
    if name is not None:
        return engine_name(name, "name")
    words = command.split() if isinstance(command, str) else [os.fspath(w) for w in command]
    return f"{default_name(tuple(words or ['engine']))[:48]}-{secrets.token_hex(3)}"


def spawned(reply: Mapping[str, Any]) -> tuple[list[str], dict[str, str], int]:
    """A spawn reply: its instances, why those that could not start did not, and the gseq before it."""
    engines = reply["engines"]
    return list(engines), {n: s["error"] for n, s in engines.items() if s.get("error")}, reply.get("after", 0)


def instances_in(reply: Mapping[str, Any], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The entries of `names` in a status or snapshot reply."""
    return {e["name"]: e for e in reply["engines"] if e["name"] in names}


def instances_of(status: Mapping[str, Any], name: str) -> list[str]:
    """The instance names of engine `name` (or `name` itself, one instance) in a status reply."""
    return [e["name"] for e in status["engines"] if e["name"] == name or e.get("engine") == name]


def one_event(reply: dict[str, Any], frames: list[Any], gseq: int) -> AnyEvent | None:
    try:
        events = split_batch(frames, reply["frames"])
    except RemoteProtocolError as exc:
        raise BusError(f"history is garbled: {exc}") from None
    return next((e for e in events if e.gseq == gseq), None)


def private_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {**PRIVATE_DEFAULTS, **settings}


class Handle:
    """An engine (all its instances) of a supervisor: its events, its end, stop, its state."""

    def __init__(self, bus: Bus, name: str, names: Sequence[str], errors: Mapping[str, str] | None = None, after: int = 0) -> None:
        self.bus = bus
        self.name = name
        self.names = tuple(names)
        self.errors = dict(errors or {})  # instances that could not be started, and why
        self.after = after  # the gseq before its spawn: what came before is another engine's
        self._ended: Ended | None = None

    def _watch(self) -> EndWatch:
        return EndWatch(self.name, frozenset(self.names), self.after)

    def events(self, *, history: int | str | None = ALL) -> Iterator[AnyEvent]:
        """Its events, in order, none lost, from the first (history=ALL) until every
        instance has ended (its last `state` event is the last one handed out)."""
        watch = self._watch()
        with self.bus.reading(self.names, history=history) as sub:
            for event in self._follow(sub, watch, None):
                yield event
        self._ended = watch.ended()

    def wait(self, timeout: float | None = None) -> Ended:
        """Block until every instance has ended (TimeoutError after `timeout` seconds)."""
        if self._ended is None:
            watch = self._watch()
            with self.bus.reading(self.names, kinds=END_KINDS) as sub:
                for _ in self._follow(sub, watch, timeout):
                    pass
            self._ended = watch.ended()
        return self._ended

    def _follow(self, sub: Subscriber, watch: EndWatch, timeout: float | None) -> Iterator[AnyEvent]:
        until = None if timeout is None else time.monotonic() + timeout
        while not watch.done:
            wait = QUIET_CHECK if until is None else max(0.0, min(QUIET_CHECK, until - time.monotonic()))
            try:
                event = sub.recv(timeout=wait)
            except TimeoutError:
                if until is not None and time.monotonic() >= until:
                    raise TimeoutError(f"{self.name} has not ended within {timeout:g}s") from None
                if sub.catchup.live and not sub.holds():
                    try:
                        watch.settle(self.bus.request("snapshot"), sub.catchup.position)
                    except NotRunning:
                        pass  # the subscriber says when its supervisor is gone for good
                continue
            if event is None:
                return
            if watch.take(event):
                yield event

    def stop(self) -> None:
        """Ask it to stop (its stop signal, then SIGKILL after its stop timeout); `wait()` for its end."""
        self.bus.request("stop", name=self.name)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Each instance's current state, as `bus status --json` shows it (docs/PROTOCOL.md, `snapshot`)."""
        reply = self.bus.request("snapshot")
        return instances_in(reply, self.names)

    def __repr__(self) -> str:
        return f"<Handle {self.name} {list(self.names)}>"


class Bus:
    """A client of one supervisor: `Bus(ADDRESS)` for a running one, `Bus.start()` for a private one."""

    def __init__(self, address: str | Address | None = None, *, timeout: float = 10.0, _hosted: HostedSupervisor | None = None) -> None:
        self.address = address if isinstance(address, Address) else resolve(address)
        self.timeout = timeout
        self.ctx = zmq.Context()
        self._control = ControlClient(self.ctx, self.address, timeout=timeout)
        self._turn = threading.Lock()   # the control socket: one request at a time
        self._guard = threading.Lock()  # the open subscriptions, against close()
        self._hosted = _hosted
        self._spawned: list[Handle] = []
        self._reading: set[Subscriber] = set()  # open subscriptions of handles (closed by them; the context ends after them)
        self._closed = False
        atexit.register(self._at_exit)

    @classmethod
    def start(cls, config: str | Path | None = None, *, session: str | None = None, keys: str | Path | None = None,
              listen: str | None = None, insecure: bool = False, timeout: float = 10.0, **settings: Any) -> Bus:
        """Start a supervisor of this program's own and connect to it. `config`: a TOML file
        whose engines start with it; `settings`: its [supervisor] keys (stop_timeout,
        history_events, history_mb, journal (off unless asked), ...); `session`: a name
        (default: a private one). Raises BusError in one line if it cannot start."""
        hosted = HostedSupervisor(config, session, private_settings(settings), keys=keys, listen=listen, insecure=insecure)
        try:
            hosted.wait_endpoints()
            bus = cls(hosted.session, timeout=timeout, _hosted=hosted)
        except BaseException:
            hosted.let_go()
            hosted.reap(1.0)
            raise
        try:
            bus._wait_ready(hosted)
        except BaseException:
            bus.close()
            raise
        return bus

    def _wait_ready(self, hosted: HostedSupervisor) -> None:
        began = time.monotonic()
        while True:
            hosted.check_start(began)
            try:
                if hosted.answered(self.request("hello", timeout=0.25)):
                    return
            except NotRunning:
                pass

    # -- requests ----------------------------------------------------------------

    def request(self, op: str, *, timeout: float | None = -1.0, **args: Any) -> dict[str, Any]:
        """One control request (docs/PROTOCOL.md, section 7); RequestFailed if refused."""
        with self._turn:
            if self._closed:
                raise BusError("this Bus is closed")
            return self._control.request(op, timeout=timeout, **args)[0]

    def spawn(self, command: Sequence[str] | str, *, name: str | None = None, env: Mapping[str, str] | None = None,
              cwd: str | Path | None = None, shell: bool = False, **settings: Any) -> Handle:
        """Add an engine and start it; settings are a TOML engine's keys (instances, restart,
        stop_signal, stop_timeout, heartbeat_timeout, droppable, ...). A taken or bad name, a
        bad setting or a program not found raise RequestFailed and start nothing; a program
        that fails to start shows in `errors` and ends its handle as `fatal`."""
        engine = spawn_name(name, command)
        table = engine_table(command, local=self.address.session is not None, env=env, cwd=cwd, shell=shell, **settings)
        reply = self.request("spawn", name=engine, engine=table)
        handle = Handle(self, engine, *spawned(reply))
        self._spawned.append(handle)
        if self._hosted is not None:
            self._hosted.takes_up_to(settings.get("stop_timeout"))
        return handle

    # -- work queues (docs/PROTOCOL.md section 10) ---------------------------------------

    def submit(self, queue: str, payload: Mapping[str, Any], *, id: str | None = None, wait: bool = False, timeout: float | None = None) -> str:
        """Queue one job (`payload`: a map); its id. A full queue raises QueueFull, or with
        `wait` is waited on (at most `timeout` seconds). `id`: yours (a second submit with it queues nothing)."""
        return self.submit_many(queue, [payload], ids=None if id is None else [id], wait=wait, timeout=timeout)[0]

    def submit_many(self, queue: str, payloads: Sequence[Mapping[str, Any]], *, ids: Sequence[str] | None = None, wait: bool = False, timeout: float | None = None) -> list[str]:
        """Queue many jobs, in order (in requests of up to 10,000); their ids."""
        return submit_all(self.request, queue, [dict(p) for p in payloads], ids=ids, wait=wait, timeout=timeout)

    def job(self, job_id: str, *, wait: float | None = None) -> dict[str, Any]:
        """A job as the supervisor holds it (id, queue, state, attempt, instance, payload, result, error, times);
        `wait`: hold the request up to that many seconds until it is done or dead."""
        args = {"wait": min(wait, MAX_JOB_WAIT)} if wait else {}
        return dict(self.request("job", job=job_id, timeout=self.timeout + (wait or 0), **args)["job"])

    def result(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the job is done and return its result; JobDead if it died, JobTimeout after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id, wait=job_wait(timeout, deadline) or None)
            if ended(job):
                return result_of(job)
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(f"job {job_id} is still {job['state']} after {timeout:g}s")

    def jobs(self, queue: str | None = None, *, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The jobs the supervisor holds (all, of one queue, in one state), at most `limit`."""
        return list(self.request("jobs", queue=queue, state=state, limit=limit)["jobs"])

    def retry(self, job_id: str) -> dict[str, Any]:
        """Queue a dead job again (its attempts start over)."""
        return dict(self.request("retry", job=job_id)["job"])

    def handle(self, name: str) -> Handle:
        """A handle on an engine the supervisor runs (all instances of `name`, or one instance)."""
        names = instances_of(self.request("status"), name)
        if not names:
            raise RequestFailed("status", "unknown-engine", f"no engine {name!r} at {self.address.label}")
        return Handle(self, name, names)

    def forget(self, handle: Handle | str) -> list[str]:
        return list(self.request("forget", name=handle if isinstance(handle, str) else handle.name)["forgotten"])

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def event(self, gseq: int) -> AnyEvent | None:
        """Event `gseq` of this run, with its bytes (a screenshot), from the supervisor's
        history (a web app serves screenshots so); None once history no longer holds it."""
        if gseq < 1:
            return None
        with self._turn:
            if self._closed:
                raise BusError("this Bus is closed")
            reply, frames = self._control.request("history", after=gseq - 1, until=gseq)
        return one_event(reply, frames, gseq)

    def subscriber(self, names: Sequence[str] | None = None, **options: Any) -> Subscriber:
        """A Subscriber to this supervisor (of these engines only), on this Bus's context."""
        return Subscriber(self.address, engines=names, ctx=self.ctx, timeout=self.timeout, **options)

    @contextmanager
    def reading(self, names: Sequence[str], **options: Any) -> Iterator[Subscriber]:
        with self._guard:
            if self._closed:
                raise BusError("this Bus is closed")
            sub = self.subscriber(names, **options)
            self._reading.add(sub)
        try:
            yield sub
        finally:
            try:
                sub.close()
            finally:
                with self._guard:
                    self._reading.discard(sub)  # (after its sockets are closed: close() terms the context only without readers)

    # -- the end -----------------------------------------------------------------

    def close(self) -> None:
        """A private supervisor: stop every engine (each within its stop timeout) and end it.
        A supervisor connected to: stop the engines this Bus spawned that still run."""
        if self._closed:
            return
        try:
            if self._hosted is not None:
                self._down(self._hosted)
            else:
                for handle in self._spawned:
                    try:
                        handle.stop()
                    except BusError:  # ended and forgotten, or the supervisor is gone: nothing to stop
                        pass
        finally:
            with self._turn:  # (no request of another thread is on the socket while it closes)
                self._closed = True
                self._control.close()
            with self._guard:
                readers = bool(self._reading)
            atexit.unregister(self._at_exit)
            if self._hosted is not None:
                self._hosted.reap(0.0 if self._hosted.proc.poll() is not None else self._hosted.close_wait)
            if not readers:  # (a handle's events() still read in another thread: its context ends with it)
                self.ctx.term()

    def _at_exit(self) -> None:
        """The program ends without having closed the bus: a private supervisor stops as if
        this program had been killed (its pipe closes: engines get HOST_GRACE, not their stop
        timeout, so the exit is not held up); a shared one is asked to stop what we spawned."""
        if self._hosted is None:
            self.close()
        elif not self._closed:
            self._hosted.let_go()
            self._hosted.reap(self._hosted.close_wait)

    def _down(self, hosted: HostedSupervisor) -> None:
        if hosted.proc.poll() is not None:
            return
        try:
            with self._turn:
                self._control.request("down", timeout=2.0)
        except BusError:  # not answering: closing the pipe stops it (HOST_GRACE), reap waits for that
            hosted.let_go()

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Bus {self.address.label}{' (private)' if self._hosted else ''}>"
