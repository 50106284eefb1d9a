"""The engines of one supervisor, as a state machine without I/O.

How it works (in the manner of h11's `Connection`): the loop (core.py) tells the
fleet what happened, and the fleet answers with what to publish (`Publish`) or
do (`StopAll`); it never touches a socket. Inputs: an engine's event
(`engine_event`), output lines (`output`), a stream's end and a process's exit
(`stream_closed`, `exited`), the clock (`tick`), and commands (`start`, `stop`,
`restart`, `shutdown`, `add`, `forget`). Processes are started and signalled
through the process seam it is given (processes.py: the OS; a fake in tests),
and time comes from the clock it is given, so every decision is testable
without a process and without sleeping (tests/unit/test_fleet.py).

Every change of an engine's state goes through `_move`, which asks the lifecycle
table (lifecycle.py) and publishes a `state` event with its `cause`. Things due
at a time (a backoff ends, a start is deemed good, a heartbeat is missed, an
engine goes quiet, a stop times out, an exit's last events are in, a leftover
process group is due for SIGKILL) happen in `tick`, which says when it next
needs to run; each engine's next due time sits in a heap (timers.py), so a tick
costs what is due, not the number of engines. Engines start a batch per tick,
so the loop takes their output and exits in between. When an engine exits,
`_finish_exit` recovers from its crash spool what never arrived (losses.py),
publishes the exit, and asks its RestartTracker what comes next.

Liveness, three ways (each makes it `unresponsive`; `on_unresponsive` says
what then): no event at all for `heartbeat_timeout` (frozen, or gone); its SDK's
heartbeat saying its work has been still that long (`idle`: a hung main thread,
though the heartbeat thread runs); no event but heartbeats and no output line
for `idle_timeout` (any engine, SDK or not).
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from bus.process import exit_info
from bus.protocol import EngineExited, EngineHello, EngineState, Event, Log, RemoteProtocolError
from bus.protocol.legacy import line_event
from bus.view import most_counts

from .children import Child, Proc, ProcessSeam, engine_env
from .config import EngineSpec, SupervisorConfig
from .lifecycle import ALIVE, FINAL, State, Trigger, next_state
from .losses import check_bye, drops_of, map_acks, recover_spool
from .outcome import spawn_error
from .restart import Decision, RestartTracker
from .timers import KILL_WAIT, STARTED_AFTER, TimerHeap, heartbeat_watched, hello_wait, quiet_watched, sdk_settings

MAX_REMOTE = 1000    # remote engines one supervisor keeps track of
MAX_ENDED = 1000     # ended engines added at run time that are kept (for status) before the oldest is forgotten
SPAWN_BATCH = 50     # engines started per tick (the loop takes their output in between)
SILENT_EXIT_GRACE = 0.05  # seconds an exit waits for events when the process said no hello and made no crash spool


@dataclass(slots=True)  # (not frozen: one is made per event, and a frozen init costs twice as much)
class Publish:
    """Output: publish this event (`blobs`, `raw`: as the engine sent them, see core._publish)."""

    event: Event
    blobs: Sequence[Any] | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class StopAll:
    """Output: the run stops (an engine with on_exit = stop-all ended); the fleet has begun
    stopping every engine already, the loop records why."""

    reason: str


Output = Publish | StopAll


@dataclass(frozen=True, slots=True)
class Answer:
    """A command's answer for one instance: its state now, and why nothing was done if nothing was."""

    state: str
    already: bool = False   # it was in that state already
    remote: str = ""        # a remote engine: why it cannot be signalled, and where to ask

    def text(self) -> str:
        """The words of the `engines` map in the reply (docs/PROTOCOL.md, section 7)."""
        if self.remote:
            return f"remote: {self.remote}"
        return f"already {self.state}" if self.already else self.state

    def fields(self) -> dict[str, Any]:
        return {"state": self.state, "already": self.already, "remote": bool(self.remote)}


class Fleet:
    def __init__(self, config: SupervisorConfig, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.config = config
        self.clock, self.wall, self.rng = clock, wall, rng
        self.children: dict[str, Child] = {}
        self._added: set[str] = set()  # instances added while running (`add`), not from the config
        self._open = {False: 0, True: 0}  # children not in a final state: spawned ones, remote ones
        for spec in config.engines:
            self._add_spec(spec)
        self._timers = TimerHeap()
        self._to_start: deque[Child] = deque()
        self._stuck_looked = 0.0
        self._out: list[Output] = []
        self.accepted = 0  # engine events taken (published, or a launcher's exit report)
        self.lines = 0     # output lines taken
        self.shutting_down = False
        self.lingering: dict[int, float] = {}  # process group left by an exited engine -> SIGKILL time
        self.procs: ProcessSeam | None = None
        self.endpoint = ""
        self.control = ""
        self.session_dir = ""
        self.spool_dir: Path | None = None

    def open(self, procs: ProcessSeam, *, endpoint: str, session_dir: str = "", spool_dir: Path | None = None, control: str = "") -> None:
        """Ready to start engines: they reach us at `endpoint` (and ask for work at `control`); their crash spools go in `spool_dir` (None: none)."""
        self.procs, self.endpoint, self.session_dir, self.spool_dir, self.control = procs, endpoint, session_dir, spool_dir, control

    def _add_spec(self, spec: EngineSpec) -> list[Child]:
        added = [Child(spec=spec, name=name, instance=k, tracker=RestartTracker(spec.restart, self.rng)) for k, name in enumerate(spec.instance_names(), 1)]
        for child in added:
            self._add(child)
        return added

    def _add(self, child: Child) -> None:
        self.children[child.name] = child
        self._open[child.remote] += child.state not in FINAL

    def _drop(self, child: Child) -> None:
        del self.children[child.name]
        self._added.discard(child.name)
        self._open[child.remote] -= child.state not in FINAL

    def _take_out(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    # -- commands ----------------------------------------------------------------

    def select(self, name: str) -> list[Child]:
        """An instance by name, or every instance of an engine."""
        picked = [c for c in self.children.values() if c.name == name or c.spec.name == name]
        if not picked:
            raise LookupError(f"no engine or instance {name!r}; known: {', '.join(self.children)}")
        return picked

    def start_all(self) -> None:
        """Start every engine, a batch per tick."""
        self._to_start.extend(c for c in self.children.values() if c.state is State.PENDING)

    def add(self, spec: EngineSpec) -> list[Output]:
        """A new engine while the fleet runs: started at the next tick. ValueError if a name is taken."""
        new = {spec.name, *spec.instance_names()}
        taken = [c.name for c in self.children.values() if new & {c.name, c.spec.name}][:1]  # (every name `select` would also match)
        if taken:
            raise ValueError(f"engine name {taken[0]!r} is taken")
        ended = [c for c in self.children.values() if c.name in self._added and c.state in FINAL]
        for gone in ended[: max(0, len(ended) - MAX_ENDED + 1)]:  # the oldest ended ones go (the config's own are kept: they make the exit code)
            self._drop(gone)
        added = self._add_spec(spec)
        self._added.update(c.name for c in added)
        self._to_start.extend(added)
        return self._take_out()

    def added(self, name: str) -> bool:
        """Whether this instance was added while running (`add`), not from the config."""
        return name in self._added

    def forget(self, name: str) -> None:
        """Forget ended engines (all instances, or one). LookupError: none; ValueError: one is not ended."""
        picked = self.select(name)
        alive = [c.name for c in picked if c.state not in FINAL]
        if alive:
            raise ValueError(f"engine {alive[0]!r} has not ended: stop it first")
        for child in picked:
            self._drop(child)

    def start(self, name: str) -> tuple[dict[str, Answer], list[Output]]:
        answers = {}
        for child in self.select(name):
            if child.remote:
                answers[child.name] = _cannot_signal(child)
            elif child.state in ALIVE:
                answers[child.name] = Answer(str(child.state), already=True)
            else:
                child.tracker.reset()
                self._spawn(child, "started by request", "request")
                answers[child.name] = Answer(str(child.state))
        return answers, self._take_out()

    def stop(self, name: str) -> tuple[dict[str, Answer], list[Output]]:
        answers = {}
        for child in self.select(name):
            if child.remote:
                answers[child.name] = _cannot_signal(child)
                continue
            before = child.state
            self._stop(child, "stop", "stopped by request")
            answers[child.name] = Answer(str(child.state), already=child.state == before and before not in ALIVE)
        return answers, self._take_out()

    def restart(self, name: str) -> tuple[dict[str, Answer], list[Output]]:
        answers = {}
        for child in self.select(name):
            if child.remote:
                answers[child.name] = _cannot_signal(child)
                continue
            child.tracker.reset()
            if child.state in ALIVE:
                self._stop(child, "restart", "restart requested")
            else:
                self._spawn(child, "restarted by request", "request")
            answers[child.name] = Answer(str(child.state))
        return answers, self._take_out()

    def shutdown(self, reason: str) -> list[Output]:
        self._shutdown(reason)
        return self._take_out()

    def _shutdown(self, reason: str) -> None:
        self.shutting_down = True
        for child in self.children.values():
            if not child.remote:
                self._stop(child, "shutdown", reason)
            elif child.state is State.RUNNING:
                self._note(child, "warning", f"this remote engine keeps running on {child.host or 'its host'} (pid {child.pid}): the supervisor cannot stop it")

    def kill_now(self, after: float = 0.0) -> None:
        """A second Ctrl-C: no more grace (`after`: at most this much more)."""
        at = self.clock() + after
        for child in self.children.values():
            if child.state in ALIVE and not child.remote and (child.timers.kill_at is None or child.timers.kill_at > at):
                child.timers.kill_at = at
                self._timers.arm(child, self._next_due(child))

    def all_final(self) -> bool:
        """Nothing more will happen by itself (remote engines do not hold up a shutdown)."""
        return not self._open[False] and (self.shutting_down or not self._open[True])

    # -- what engines send ---------------------------------------------------------

    def engine_event(self, event: Event, blobs: Sequence[Any] | None = None, raw: bytes | None = None, via: str = "") -> list[Output]:
        """One event an engine sent (`via`: who sent it, for a hello that attaches a remote
        engine). Raises RemoteProtocolError when it may not say it."""
        child = self.children.get(event.engine)
        if event.KIND == "hello" and (child is None or child.remote or event.seq is None):
            child = self._attach(event, via)  # type: ignore[arg-type]
        elif child is None:
            raise RemoteProtocolError(f"unknown engine {event.engine!r} (a remote engine says hello first)", reason="unknown-engine")
        elif event.KIND == "exit":
            if not child.remote:
                raise RemoteProtocolError("kind 'exit' is sent only by the supervisor, or by bus attach for a remote engine", reason="reserved-kind")
            self.accepted += 1
            self._seen(child, event)
            self._remote_exit(child, event)  # type: ignore[arg-type]  # published after its last events
            return self._take_out()
        self._accept(child, event, blobs, raw)
        return self._take_out()

    def _accept(self, child: Child, event: Event, blobs: Sequence[Any] | None = None, raw: bytes | None = None) -> None:
        """An event from an engine's SDK (received, or recovered from its spool)."""
        if event.seq is not None and event.seq <= child.max_seq and child.exit is not None:
            return  # recovered from its spool already; the late original is a duplicate
        self.accepted += 1
        child.events += 1
        if event.seq is not None or not child.remote:  # not what a remote engine's launcher sends for it
            child.run_events += 1
        self._out.append(Publish(event, blobs, raw))
        self._seen(child, event)

    def _seen(self, child: Child, event: Event) -> None:
        """What an event from this engine's SDK (or a marker) means for its lifecycle."""
        kind = event.KIND
        if event.seq is not None or child.remote:  # from its SDK (or its launcher)
            child.last_seen = now = self.clock()
            if event.seq is not None:
                child.max_seq = max(child.max_seq, event.seq)
                if child.acks is not None:
                    child.acks.ack(child.max_seq)  # its spool may now overwrite what we have
            if kind != "heartbeat":
                child.last_active = now
            self._liveness(child, event)
        if kind == "hello":
            child.hello |= event.seq is not None  # its SDK's hello (a launcher's does not promise a bye)
            if event.seq is not None and child.spool is not None and child.acks is None:
                child.acks = map_acks(child.spool, child.max_seq)
            if child.state is State.STARTING:
                self._move(child, Trigger.STARTED, "said hello", "hello")
            self._arm(child)  # its heartbeats are watched from now on
        elif kind == "heartbeat":
            child.dropped_now = most_counts(child.dropped_now, drops_of(event))
        elif kind == "bye":
            child.bye = True
            check_bye(child, event, self._note)
            if child.remote and not child.launcher and child.state is State.RUNNING:
                self._move(child, Trigger.EXIT, "remote: said bye (its exit code is known only where it ran)", "bye")
            self._arm(child)  # its exit may be published now

    def _liveness(self, child: Child, event: Event) -> None:
        """Back to running when heard from; unresponsive when its heartbeat says its work is still."""
        heartbeat = event.KIND == "heartbeat"
        still = heartbeat and not child.remote and 0 < child.spec.heartbeat_timeout <= event.idle  # type: ignore[attr-defined]
        if child.state is State.RUNNING and still:
            idle: float = event.idle  # type: ignore[attr-defined]
            self._unresponsive(child, "still", f"its work has been still for {idle:.0f}s: its main thread used no CPU and it sent nothing but heartbeats (heartbeat_timeout = {child.spec.heartbeat_timeout:g})")
        elif child.state is State.LOST:
            self._move(child, Trigger.ALIVE, "heard from it again", "heard")
        elif child.state is State.UNRESPONSIVE and not still and not (heartbeat and child.unresponsive == "quiet"):
            self._move(child, Trigger.ALIVE, "heard from it again" if child.unresponsive == "silent" else "it works again", "heard")

    def output(self, proc: Proc | None, stream: str, lines: Sequence[tuple[str, int, float]]) -> list[Output]:
        """Lines an engine's process printed: each a log (or the event a legacy marker stands for)."""
        child = self.children.get(proc.owner) if proc is not None else None
        if child is None:
            return []
        now = self.clock()
        for text, cut, ts in lines:
            child.lines += 1
            self.lines += 1
            event, said = line_event(child.name, stream, text, cut, ts)
            self._out.append(Publish(event))
            if said == "marker":
                child.markers += 1
                self._seen(child, event)
            else:
                child.bad_markers += said == "bad-marker"
            child.last_active = now
            if child.state is State.UNRESPONSIVE and child.unresponsive == "quiet":
                self._move(child, Trigger.ALIVE, "it printed again", "printed")
        return self._take_out()

    def stream_closed(self, proc: Proc, stream: str) -> None:
        child = self._current(proc)
        if child is not None:
            child.open_streams.discard(stream)
            self._arm(child)  # its exit may be published now

    def exited(self, proc: Proc, returncode: int, at: float) -> None:
        child = self._current(proc)
        if child is not None:
            self._ended(child, returncode, at)

    def _ended(self, child: Child, returncode: int, at: float) -> None:
        """Its process ended: its exit is published once its last events are in (drain_grace at most)."""
        child.exit = exit_info(returncode, at)
        grace = self.config.drain_grace
        if not child.hello and child.spool is not None and not child.spool.exists():
            grace = min(grace, SILENT_EXIT_GRACE)  # it sent nothing: our SDK makes its spool before its hello
        child.timers.exit_deadline = self.clock() + grace
        self._arm(child)

    def _current(self, proc: Proc) -> Child | None:
        """The engine whose current process `proc` is (None: an earlier one, or a forgotten engine)."""
        child = self.children.get(proc.owner)
        return child if child is not None and child.proc is proc else None

    def observe(self, event: Event, gseq: int) -> None:
        """Every published event: keep what status and snapshots show of its engine."""
        child = self.children.get(event.engine)
        if child is not None and not event.origin:  # (a hub's relayed events are its upstreams' engines)
            child.view.take(event, gseq)

    # -- remote engines --------------------------------------------------------------

    def _attach(self, hello: EngineHello, via: str) -> Child:
        """A hello for a name this supervisor does not run, or from a remote engine: it joins as
        a remote engine (or a new process of one takes its place). RemoteProtocolError if it cannot."""
        child = self.children.get(hello.engine)
        if child is not None and not child.remote:
            raise RemoteProtocolError(f"engine {hello.engine!r} is one this supervisor starts: attach under another name", reason="name-taken")
        if child is None:
            remote = [c for c in self.children.values() if c.remote]
            if len(remote) >= MAX_REMOTE:  # forget the one that ended longest ago, if any has
                gone = min((c for c in remote if c.state in FINAL), key=lambda c: c.last_seen, default=None)
                if gone is None:
                    raise RemoteProtocolError(f"already {MAX_REMOTE} remote engines running: {hello.engine!r} not attached", reason="too-many-engines")
                self._drop(gone)
            spec = EngineSpec(name=hello.engine, command=())
            child = Child(spec=spec, name=hello.engine, instance=1, tracker=RestartTracker(spec.restart), remote=True)
            self._add(child)
        launcher = hello.seq is None  # `bus attach` speaks for the process it started
        timeout = 3 * hello.heartbeat if hello.heartbeat else self.config.remote_timeout
        if child.state is State.RUNNING and (child.pid, child.host) == (hello.pid, hello.host):
            child.launcher |= launcher  # the engine's own SDK and its launcher: one process
            child.spec = replace(child.spec, heartbeat_timeout=max(child.spec.heartbeat_timeout, timeout))
            return child
        taken = f"; it replaces pid {child.pid} on {child.host or '?'}" if child.state is State.RUNNING else ""
        child.new_process(hello.pid, self.wall())
        child.host, child.via, child.launcher = hello.host, via, launcher
        child.spec = replace(child.spec, heartbeat_timeout=timeout)
        child.last_seen = child.last_active = self.clock()
        self._move(child, Trigger.ATTACH, f"remote: attached from {hello.host or 'an unnamed host'}, pid {hello.pid} ({via}){taken}", "attached")
        return child

    def _remote_exit(self, child: Child, report: EngineExited) -> None:
        """`bus attach` reports how the process it launched ended."""
        if report.pid != child.pid or child.exit is not None:
            return  # an earlier process of this name, or already known
        self._ended(child, report.code if report.signal is None else -report.signal, report.ts)

    # -- time ----------------------------------------------------------------------

    def tick(self, now: float | None = None) -> tuple[list[Output], float | None]:
        """Do what is due; return what to publish and the next time something will be due (None: nothing)."""
        now = self.clock() if now is None else now
        for _ in range(min(len(self._to_start), SPAWN_BATCH)):
            child = self._to_start.popleft()
            if child.state is State.PENDING and self.children.get(child.name) is child:
                self._spawn(child, "", "start")
        for child in self._timers.due(now):
            if self.children.get(child.name) is child:
                self._tick_child(child, now)
                self._arm(child, now)
        for group, kill_at in list(self.lingering.items()):
            if now >= kill_at:
                self._kill_lingering(group)
        due = [t for t in (self._timers.next(), min(self.lingering.values(), default=None)) if t is not None]
        if self._to_start:
            due.append(now)  # more to start: come back after the other sockets had a turn
        return self._take_out(), min(due) if due else None

    def _arm(self, child: Child, now: float | None = None) -> None:
        """Put the child's next due time in the heap. After its tick (`now`), a time not after
        it is one the fleet cannot act on (a process that survives SIGKILL: the loop's `stuck`
        check): not put back, or it would spin."""
        self._timers.arm(child, self._next_due(child, after=now))

    def _next_due(self, child: Child, after: float | None = None) -> float | None:
        """The earliest time something is due for the child (only those past `after`, if given)."""
        t = child.timers
        due = [x for x in (t.exit_deadline, t.started_at, t.restart_at, t.kill_at, t.check_at) if x is not None]
        if t.exit_deadline is not None and not child.open_streams and child.bye:
            due.append(0.0)  # its last events are in: publish its exit now
        if heartbeat_watched(child):
            due.append(child.last_seen + child.spec.heartbeat_timeout)
        if quiet_watched(child):
            due.append(child.last_active + child.spec.idle_timeout)
        if t.killed_at is not None and child.state in ALIVE:
            due.append(t.killed_at + KILL_WAIT)
        if after is not None:
            due = [x for x in due if x > after]
        return min(due) if due else None

    def _tick_child(self, child: Child, now: float) -> None:
        t = child.timers
        if t.exit_deadline is not None and (now >= t.exit_deadline or (not child.open_streams and child.bye)):
            self._finish_exit(child, now)
        if child.state is State.STARTING and t.started_at is not None and now >= t.started_at:
            self._move(child, Trigger.STARTED, f"up for {STARTED_AFTER:g}s", "up")
        if t.check_at is not None and now >= t.check_at:
            self._check_settings(child)
        if heartbeat_watched(child) and now >= child.last_seen + child.spec.heartbeat_timeout:
            silent = now - child.last_seen
            if child.remote:
                self._move(child, Trigger.VANISH, f"remote: nothing heard for {silent:.1f}s (heartbeat timeout {child.spec.heartbeat_timeout:g}s): it, its host or the network is gone", "vanished")
                return
            self._unresponsive(child, "silent", f"no event for {silent:.1f}s (heartbeat_timeout = {child.spec.heartbeat_timeout:g})")
        if quiet_watched(child) and now >= child.last_active + child.spec.idle_timeout:
            self._unresponsive(child, "quiet", f"no event and no output line for {now - child.last_active:.1f}s (idle_timeout = {child.spec.idle_timeout:g})")
        if child.state is State.STOPPING and t.kill_at is not None and now >= t.kill_at:
            t.kill_at, t.killed_at = None, now
            if child.pid is not None and self.procs is not None:
                self.procs.kill(child.pid)
        if child.state is State.BACKOFF and t.restart_at is not None and now >= t.restart_at:
            self._spawn(child, "backoff over", "backoff-over")

    def _unresponsive(self, child: Child, why: str, reason: str) -> None:
        self._move(child, Trigger.SILENT, reason, why)
        child.unresponsive = why
        if child.spec.on_unresponsive == "restart":
            self._stop(child, "unresponsive", "restarting an unresponsive engine")

    def _check_settings(self, child: Child) -> None:
        """A setting only the SDK honours, given to an engine that said no hello: say it does nothing."""
        child.timers.check_at = None
        if child.hello or child.state not in (State.STARTING, State.RUNNING):
            return
        given = sdk_settings(child.spec)
        does = "does" if len(given) == 1 else "do"
        self._note(child, "warning", f"{' and '.join(given)} {does} nothing for this engine: it said no hello within {hello_wait(child.spec):g}s of starting, "
                   "so it does not use the engine SDK; idle_timeout watches a program that only prints")

    def stuck(self, now: float) -> bool:
        """Everything still alive was SIGKILLed long ago (uninterruptible sleep).
        Looked at twice a second at most: it walks every engine."""
        if now < self._stuck_looked + 0.5:
            return False
        self._stuck_looked = now
        alive = [c for c in self.children.values() if c.state in ALIVE]
        return bool(alive) and all(c.timers.killed_at is not None and now >= c.timers.killed_at + KILL_WAIT for c in alive)

    # -- changes ----------------------------------------------------------------------

    def _move(self, child: Child, trigger: Trigger, reason: str, cause: str, delay: float | None = None, ended: str = "") -> None:
        prev = child.state
        child.state = next_state(child.name, prev, trigger)
        child.reason = reason
        self._open[child.remote] += (prev in FINAL) - (child.state in FINAL)
        if child.state is not State.UNRESPONSIVE:
            child.unresponsive = ""
        # A timer belongs to its state: leaving the state cancels it (a stale one
        # would look due for ever and spin the loop).
        t = child.timers
        t.started_at = t.started_at if child.state is State.STARTING else None
        t.restart_at = t.restart_at if child.state is State.BACKOFF else None
        t.kill_at = t.kill_at if child.state is State.STOPPING else None
        self._out.append(Publish(EngineState(
            engine=child.name, state=str(child.state), prev=str(prev), pid=child.pid, reason=reason,
            restarts=child.tracker.total, delay=delay, cause=cause, ended=ended, remote=child.remote,
        )))
        self._arm(child)

    def _spawn(self, child: Child, reason: str, cause: str) -> None:
        if self.shutting_down or self.procs is None:
            return
        now = self.clock()
        child.spool = self.spool_dir / f"{child.name}.{child.spawns + 1}" if self.spool_dir is not None else None
        env = engine_env(child, endpoint=self.endpoint, session_dir=self.session_dir, control=self.control)
        try:
            proc = self.procs.spawn(child.name, child.spec.command, child.spec.cwd, env)
        except (OSError, ValueError) as exc:  # ValueError: what the OS cannot take (a NUL in an argument, '=' in a variable name)
            child.spawn_error, child.pid, child.spool = spawn_error(child, exc), None, None
            decision = child.tracker.decide(failed=True, uptime=0.0, now=now)
            if decision.trigger is not Trigger.RETRY:  # what cannot start and will not be retried is given up
                decision = Decision(Trigger.GIVE_UP, reason=decision.reason)
            self._conclude(child, decision, now, child.spawn_error, "cannot-start", ended=f"cannot start {child.name!r}")
            return
        child.proc = proc
        child.new_process(proc.pid, self.wall())
        child.open_streams = {"stdout", "stderr"}
        child.last_seen = child.last_active = now
        t = child.timers
        t.killed_at = t.kill_at = None
        t.check_at = now + hello_wait(child.spec) if sdk_settings(child.spec) else None
        self._move(child, Trigger.SPAWN, ", ".join(filter(None, [f"pid {child.pid}", reason])), cause)
        t.started_at = now + STARTED_AFTER
        self._arm(child)

    def _stop(self, child: Child, intent: str, reason: str) -> None:
        if child.state in (State.STARTING, State.RUNNING, State.UNRESPONSIVE):
            child.stop_intent = intent
            self._move(child, Trigger.STOP, reason, intent)
            if child.pid is not None and self.procs is not None:
                self.procs.terminate(child.pid, child.spec.stop_signal)
            child.timers.kill_at = self.clock() + self._stop_timeout(child)
            self._arm(child)
        elif child.state is State.STOPPING:
            if intent in ("stop", "shutdown"):  # a plain stop wins over a restart in progress
                child.stop_intent = intent
        elif child.state in (State.PENDING, State.BACKOFF):
            self._move(child, Trigger.STOP, reason, intent)

    def _stop_timeout(self, child: Child) -> float:
        return child.spec.stop_timeout if child.spec.stop_timeout is not None else self.config.stop_timeout

    def _finish_exit(self, child: Child, now: float) -> None:
        info = child.exit
        assert info is not None
        child.timers.exit_deadline = None
        recovered = recover_spool(child, self._accept, self._note)
        if child.hello and not child.bye:
            said = f"; {recovered} event(s) recovered from its crash spool" if recovered else ""
            self._note(child, "warning", f"the engine ended without its final bye{said}")
        self._out.append(Publish(EngineExited(
            engine=child.name, ts=info.at, pid=child.pid or 0, code=info.code, signal=info.signal,
            signame=info.signame, runtime=max(0.0, info.at - child.started),
        )))
        self._release_group(child, now)
        intent, child.stop_intent = child.stop_intent, ""
        child.stopped_by_us = not child.remote and (intent in ("stop", "shutdown") or self.shutting_down)
        how = f"exit code {info.code}" if info.signal is None else f"killed by {info.signame}"
        if child.remote:
            decision, cause = Decision(Trigger.EXIT, reason="a remote engine: ended on its host"), "remote-exit"
        elif child.stopped_by_us:
            decision, cause = Decision(Trigger.EXIT, reason="stopped"), "stopped"
        elif intent == "restart":
            decision, cause = Decision(Trigger.RETRY, delay=0.0, reason="restarting by request"), "restart"
        else:
            failed = info.signal is not None or info.code != 0 or intent == "unresponsive"
            uptime = max(0.0, info.at - child.started)
            decision = child.tracker.decide(failed=failed, uptime=uptime, now=now, forced=intent == "unresponsive")
            cause = "budget" if decision.trigger is Trigger.GIVE_UP else "exit"
        self._conclude(child, decision, now, how, cause)

    def _conclude(self, child: Child, decision: Decision, now: float, how: str, cause: str, ended: str = "") -> None:
        delay = decision.delay if decision.trigger is Trigger.RETRY else None
        self._move(child, decision.trigger, f"{how}: {decision.reason}", cause, delay, ended=ended or how)
        if decision.trigger is Trigger.RETRY:
            child.timers.restart_at = now + decision.delay
            self._arm(child)
        elif child.spec.on_exit == "stop-all" and not child.stopped_by_us and not self.shutting_down:
            reason = f"{child.name} ended ({how}; on_exit = stop-all)"
            self._out.append(StopAll(reason))
            self._shutdown(reason)  # at once: nothing due later in this tick may start

    def _release_group(self, child: Child, now: float) -> None:
        """The engine is gone; processes it left in its group get its stop signal now and SIGKILL later."""
        if child.pid is None or child.remote or self.procs is None:
            return
        if self.procs.terminate(child.pid, child.spec.stop_signal):
            timeout = self._stop_timeout(child)
            self.lingering[child.pid] = now + timeout
            self._note(child, "warning", f"the engine left processes in its group; they get {child.spec.stop_signal} now, SIGKILL in {timeout:g}s")
        else:
            self.procs.forget(child.pid)

    def _kill_lingering(self, group: int) -> None:
        del self.lingering[group]
        if self.procs is not None:
            self.procs.kill(group)
            self.procs.forget(group)

    def kill_everything(self) -> None:
        """On the way out (also on errors), before the seam kills and reaps what is left: the
        groups left by exited engines, and the crash spools."""
        for group in list(self.lingering):
            self._kill_lingering(group)
        for child in self.children.values():
            if child.acks is not None:
                child.acks.close()
                child.acks = None
            if child.spool is not None:
                child.spool.unlink(missing_ok=True)

    def _note(self, child: Child, level: str, message: str) -> None:
        self._out.append(Publish(Log(engine=child.name, message=f"bus: {message}", level=level, stream="bus")))


def _cannot_signal(child: Child) -> Answer:
    return Answer(str(child.state), remote=f"the supervisor cannot signal it (pid {child.pid} on {child.host or 'another host'}); stop it where it runs")
