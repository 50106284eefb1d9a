"""The engines of one supervisor: spawn, stop, restart, liveness, exits.

How it works: every change of an engine's state goes through `_move`, which
asks the lifecycle table (lifecycle.py) and publishes a `state` event. Things
that happen at a time (a backoff ends, a start is deemed good, a heartbeat is
missed, an engine goes quiet, a stop times out, an exit's last events are in,
a leftover process group is due for SIGKILL) happen in `tick(now)`, which
returns when it next needs to run; the supervisor's loop sleeps until then.
Each engine's next due time sits in a heap (`_arm`), so a tick costs what is
due, not the number of engines; engines are started a batch per tick, so the
loop takes their output and exits in between. When an engine exits,
`_finish_exit` recovers from its crash spool what never arrived (losses.py),
publishes the exit, and asks its RestartTracker what comes next.

Liveness, three ways (each makes it `unresponsive`, `on_unresponsive` says
what then): no event at all for `heartbeat_timeout` (frozen, or gone); its
SDK's heartbeat saying its work has been still that long (`idle`: a hung main
thread, though the heartbeat thread runs); no event but heartbeats and no
output line for `idle_timeout` (any engine, SDK or not).
"""

from __future__ import annotations

import heapq
import itertools
import random
import signal
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Callable

from bus.protocol import EngineExited, EngineHello, EngineState, Event, Log, RemoteProtocolError

from .children import POSIX, Child, Inbox, engine_env, exit_info, most_counts, observe, signal_group
from .config import EngineSpec, SupervisorConfig
from .files import give_back
from .lifecycle import ALIVE, FINAL, State, Trigger, next_state
from .losses import check_bye, drops_of, map_acks, recover_spool
from .outcome import spawn_error
from .pump import Pump
from .restart import Decision, RestartTracker
from .watchdog import Watchdog

STARTED_AFTER = 1.0  # an engine up this long (or that said hello) is running
KILL_WAIT = 5.0      # after SIGKILL, stop waiting for an exit after this long
MAX_REMOTE = 1000    # remote engines one supervisor keeps track of
SPAWN_BATCH = 50     # engines started per tick (the loop takes their output in between)
SDK_SETTINGS = ("heartbeat_timeout", "droppable")  # what only an engine using the SDK honours

Publish = Callable[[Event], None]
Accept = Callable[[Child, Event], None]


class Fleet:
    def __init__(self, config: SupervisorConfig, *, publish: Publish, accept: Accept, inbox: Inbox, rng: random.Random | None = None) -> None:
        self.config = config
        self.publish = publish
        self.accept = accept  # hand a recovered event to the normal ingest path
        self.inbox = inbox
        self.children: dict[str, Child] = {}
        self._open = {False: 0, True: 0}  # children not in a final state: spawned ones, remote ones
        for spec in config.engines:
            for k, name in enumerate(spec.instance_names(), 1):
                self._add(Child(spec=spec, name=name, instance=k, tracker=RestartTracker(spec.restart, rng)))
        self._timers: list[tuple[float, int, Child]] = []  # (when, tie-breaker, child): each child's next due time
        self._ties = itertools.count()
        self._to_start: deque[Child] = deque()
        self._stuck_looked = 0.0
        self.pump: Pump | None = None  # the thread that reads every engine's output (POSIX)
        self.shutting_down = False
        self.on_stop_all: Callable[[str], None] = lambda reason: None
        self.lingering: dict[int, float] = {}  # process group left by an exited engine -> SIGKILL time
        self.watchdog: Watchdog | None = None
        self.endpoint = ""
        self.session_dir = Path(".")

    def open(self, *, endpoint: str, session_dir: Path, watchdog: Watchdog | None) -> None:
        self.endpoint, self.session_dir, self.watchdog = endpoint, session_dir, watchdog
        if POSIX:
            self.pump = Pump(self.inbox, self.config.max_line)
        spools = session_dir / "spool"
        spools.mkdir(mode=0o700, exist_ok=True)
        for stale in spools.iterdir():  # left by a supervisor that was killed; we hold the session lock
            stale.unlink(missing_ok=True)

    def close(self) -> None:
        """After kill_everything: stop reading."""
        if self.pump is not None:
            self.pump.stop()
            self.pump = None

    def _add(self, child: Child) -> None:
        self.children[child.name] = child
        self._open[child.remote] += child.state not in FINAL

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

    def start(self, name: str) -> dict[str, str]:
        outcome = {}
        for child in self.select(name):
            if child.remote:
                outcome[child.name] = _cannot_signal(child)
                continue
            if child.state in ALIVE:
                outcome[child.name] = f"already {child.state}"
                continue
            child.tracker.reset()
            self._spawn(child, "started by request")
            outcome[child.name] = str(child.state)
        return outcome

    def stop(self, name: str) -> dict[str, str]:
        outcome = {}
        for child in self.select(name):
            if child.remote:
                outcome[child.name] = _cannot_signal(child)
                continue
            before = child.state
            self._stop(child, "stop", "stopped by request")
            outcome[child.name] = str(child.state) if child.state != before or before in ALIVE else f"already {before}"
        return outcome

    def restart(self, name: str) -> dict[str, str]:
        outcome = {}
        for child in self.select(name):
            if child.remote:
                outcome[child.name] = _cannot_signal(child)
                continue
            child.tracker.reset()
            if child.state in ALIVE:
                self._stop(child, "restart", "restart requested")
            else:
                self._spawn(child, "restarted by request")
            outcome[child.name] = str(child.state)
        return outcome

    def shutdown(self, reason: str) -> None:
        self.shutting_down = True
        for child in self.children.values():
            if not child.remote:
                self._stop(child, "shutdown", reason)
            elif child.state is State.RUNNING:
                self._note(child, "warning", f"this remote engine keeps running on {child.host or 'its host'} (pid {child.pid}): the supervisor cannot stop it")

    def kill_now(self) -> None:
        """A second Ctrl-C: no more grace."""
        now = time.monotonic()
        for child in self.children.values():
            if child.state in ALIVE and not child.remote:
                child.kill_at = now
                self._arm(child)

    def all_final(self) -> bool:
        """Nothing more will happen by itself (remote engines do not hold up a shutdown)."""
        return not self._open[False] and (self.shutting_down or not self._open[True])

    # -- remote engines --------------------------------------------------------------

    def attach(self, hello: EngineHello, via: str) -> Child:
        """A hello for a name this supervisor does not run, or from a remote engine:
        it joins as a remote engine (or a new process of one takes its place).
        Raises RemoteProtocolError when it cannot."""
        child = self.children.get(hello.engine)
        if child is not None and not child.remote:
            raise RemoteProtocolError(f"engine {hello.engine!r} is one this supervisor starts: attach under another name", reason="name-taken")
        if child is None:
            remote = [c for c in self.children.values() if c.remote]
            if len(remote) >= MAX_REMOTE:  # forget the one that ended longest ago, if any has
                gone = min((c for c in remote if c.state in FINAL), key=lambda c: c.last_seen, default=None)
                if gone is None:
                    raise RemoteProtocolError(f"already {MAX_REMOTE} remote engines running: {hello.engine!r} not attached", reason="too-many-engines")
                del self.children[gone.name]
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
        child.new_process(hello.pid)
        child.host, child.via, child.launcher = hello.host, via, launcher
        child.spec = replace(child.spec, heartbeat_timeout=timeout)
        child.last_seen = child.last_active = time.monotonic()
        self._move(child, Trigger.ATTACH, f"remote: attached from {hello.host or 'an unnamed host'}, pid {hello.pid} ({via}){taken}")
        return child

    def remote_exit(self, child: Child, report: EngineExited) -> None:
        """`bus attach` reports how the process it launched ended."""
        if report.pid != child.pid or child.exit is not None:
            return  # an earlier process of this name, or already known
        self.exited(child, report.code if report.signal is None else -report.signal, report.ts)

    # -- what the loop tells us ------------------------------------------------------

    def observe(self, event: Event, gseq: int) -> None:
        """Every published event: keep what status and snapshots show of its engine."""
        child = self.children.get(event.engine)
        if child is not None and not event.origin:  # (a hub's relayed events are its upstreams' engines)
            observe(child, event, gseq)

    def seen(self, child: Child, event: Event) -> None:
        """An event from this engine's SDK (or a marker) was published: its lifecycle."""
        kind = event.KIND
        if event.seq is not None or child.remote:  # from its SDK (or its launcher)
            child.last_seen = now = time.monotonic()
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
                self._move(child, Trigger.STARTED, "said hello")
            self._arm(child)  # its heartbeats are watched from now on
        elif kind == "heartbeat":
            child.dropped_now = most_counts(child.dropped_now, drops_of(event))
        elif kind == "bye":
            child.bye = True
            check_bye(child, event, self._note)
            if child.remote and not child.launcher and child.state is State.RUNNING:
                self._move(child, Trigger.EXIT, "remote: said bye (its exit code is known only where it ran)")
            self._arm(child)  # its exit may be published now

    def _liveness(self, child: Child, event: Event) -> None:
        """Back to running when heard from; unresponsive when its heartbeat says its work is still."""
        heartbeat = event.KIND == "heartbeat"
        still = heartbeat and not child.remote and 0 < child.spec.heartbeat_timeout <= event.idle  # type: ignore[attr-defined]
        if child.state is State.RUNNING and still:
            idle: float = event.idle  # type: ignore[attr-defined]
            self._unresponsive(child, "still", f"its work has been still for {idle:.0f}s: its main thread used no CPU and it sent nothing but heartbeats (heartbeat_timeout = {child.spec.heartbeat_timeout:g})")
        elif child.state is State.LOST:
            self._move(child, Trigger.ALIVE, "heard from it again")
        elif child.state is State.UNRESPONSIVE and not still and not (heartbeat and child.unresponsive == "quiet"):
            self._move(child, Trigger.ALIVE, "heard from it again" if child.unresponsive == "silent" else "it works again")

    def line_seen(self, child: Child) -> None:
        """An output line of this engine was published."""
        child.last_active = time.monotonic()
        if child.state is State.UNRESPONSIVE and child.unresponsive == "quiet":
            self._move(child, Trigger.ALIVE, "it printed again")

    def streams_closed(self, child: Child, stream: str) -> None:
        child.open_streams.discard(stream)
        self._arm(child)  # its exit may be published now

    def exited(self, child: Child, returncode: int, at: float) -> None:
        child.exit = exit_info(returncode, at)
        child.exit_deadline = time.monotonic() + self.config.drain_grace
        self._arm(child)

    # -- time ----------------------------------------------------------------------

    def tick(self, now: float) -> float | None:
        """Do what is due; return the next time something will be (None: nothing)."""
        for _ in range(min(len(self._to_start), SPAWN_BATCH)):
            child = self._to_start.popleft()
            if child.state is State.PENDING:
                self._spawn(child, "")
        while self._timers and self._timers[0][0] <= now:
            _, _, child = heapq.heappop(self._timers)
            child.armed = None
            if self.children.get(child.name) is child:
                self._tick_child(child, now)
                self._arm(child, now)
        for group, kill_at in list(self.lingering.items()):
            if now >= kill_at:
                self._kill_lingering(group)
        due = [t for t in (self._timers[0][0] if self._timers else None, min(self.lingering.values(), default=None)) if t is not None]
        if self._to_start:
            due.append(now)  # more to start: come back after the other sockets had a turn
        return min(due) if due else None

    def _arm(self, child: Child, now: float | None = None) -> None:
        """Put the child's next due time in the heap (unless an earlier one is there already).
        After its tick (`now`), a time not after it is one the fleet cannot act on (a process
        that survives SIGKILL: the loop's `stuck` check): not put back, or it would spin."""
        when = self._next_due(child, after=now)
        if when is not None and (child.armed is None or when < child.armed):
            child.armed = when
            heapq.heappush(self._timers, (when, next(self._ties), child))

    def _next_due(self, child: Child, after: float | None = None) -> float | None:
        """The earliest time something is due for the child (only those past `after`, if given)."""
        due = [t for t in (child.exit_deadline, child.started_at, child.restart_at, child.kill_at, child.check_at) if t is not None]
        if child.exit_deadline is not None and not child.open_streams and child.bye:
            due.append(0.0)  # its last events are in: publish its exit now
        if self._heartbeat_watched(child):
            due.append(child.last_seen + child.spec.heartbeat_timeout)
        if self._quiet_watched(child):
            due.append(child.last_active + child.spec.idle_timeout)
        if child.killed_at is not None and child.state in ALIVE:
            due.append(child.killed_at + KILL_WAIT)
        if after is not None:
            due = [t for t in due if t > after]
        return min(due) if due else None

    def _tick_child(self, child: Child, now: float) -> None:
        if child.exit_deadline is not None and (now >= child.exit_deadline or (not child.open_streams and child.bye)):
            self._finish_exit(child, now)
        if child.state is State.STARTING and child.started_at is not None and now >= child.started_at:
            self._move(child, Trigger.STARTED, f"up for {STARTED_AFTER:g}s")
        if child.check_at is not None and now >= child.check_at:
            self._check_settings(child)
        if self._heartbeat_watched(child) and now >= child.last_seen + child.spec.heartbeat_timeout:
            silent = now - child.last_seen
            if child.remote:
                self._move(child, Trigger.VANISH, f"remote: nothing heard for {silent:.1f}s (heartbeat timeout {child.spec.heartbeat_timeout:g}s): it, its host or the network is gone")
                return
            self._unresponsive(child, "silent", f"no event for {silent:.1f}s (heartbeat_timeout = {child.spec.heartbeat_timeout:g})")
        if self._quiet_watched(child) and now >= child.last_active + child.spec.idle_timeout:
            self._unresponsive(child, "quiet", f"no event and no output line for {now - child.last_active:.1f}s (idle_timeout = {child.spec.idle_timeout:g})")
        if child.state is State.STOPPING and child.kill_at is not None and now >= child.kill_at:
            child.kill_at, child.killed_at = None, now
            child.kill_group()
        if child.state is State.BACKOFF and child.restart_at is not None and now >= child.restart_at:
            self._spawn(child, "backoff over")

    def _unresponsive(self, child: Child, why: str, reason: str) -> None:
        self._move(child, Trigger.SILENT, reason)
        child.unresponsive = why
        if child.spec.on_unresponsive == "restart":
            self._stop(child, "unresponsive", "restarting an unresponsive engine")

    def _check_settings(self, child: Child) -> None:
        """A setting only the SDK honours, given to an engine that said no hello: say it does nothing."""
        child.check_at = None
        if child.hello or child.state not in (State.STARTING, State.RUNNING):
            return
        given = _sdk_settings(child.spec)
        does = "does" if len(given) == 1 else "do"
        self._note(child, "warning", f"{' and '.join(given)} {does} nothing for this engine: it said no hello within {_hello_wait(child.spec):g}s of starting, "
                   "so it does not use the engine SDK; idle_timeout watches a program that only prints")

    @staticmethod
    def _heartbeat_watched(child: Child) -> bool:
        heard = child.hello or child.remote  # a remote engine is watched from its (or its launcher's) hello on
        return child.state is State.RUNNING and heard and child.spec.heartbeat_timeout > 0 and child.exit is None

    @staticmethod
    def _quiet_watched(child: Child) -> bool:
        return child.state is State.RUNNING and child.spec.idle_timeout > 0 and child.exit is None

    def stuck(self, now: float) -> bool:
        """Everything still alive was SIGKILLed long ago (uninterruptible sleep).
        Looked at twice a second at most: it walks every engine."""
        if now < self._stuck_looked + 0.5:
            return False
        self._stuck_looked = now
        alive = [c for c in self.children.values() if c.state in ALIVE]
        return bool(alive) and all(c.killed_at is not None and now >= c.killed_at + KILL_WAIT for c in alive)

    # -- changes ----------------------------------------------------------------------

    def _move(self, child: Child, trigger: Trigger, reason: str = "", delay: float | None = None) -> None:
        prev = child.state
        child.state = next_state(child.name, prev, trigger)
        child.reason = reason
        self._open[child.remote] += (prev in FINAL) - (child.state in FINAL)
        if child.state is not State.UNRESPONSIVE:
            child.unresponsive = ""
        # A timer belongs to its state: leaving the state cancels it (a stale one
        # would look due for ever and spin the loop).
        child.started_at = child.started_at if child.state is State.STARTING else None
        child.restart_at = child.restart_at if child.state is State.BACKOFF else None
        child.kill_at = child.kill_at if child.state is State.STOPPING else None
        self.publish(
            EngineState(
                engine=child.name, state=str(child.state), prev=str(prev), pid=child.pid, reason=reason,
                restarts=child.tracker.total, delay=delay,
            )
        )
        self._arm(child)

    def _spawn(self, child: Child, reason: str) -> None:
        if self.shutting_down:
            return
        now = time.monotonic()
        child.spool = self.session_dir / "spool" / f"{child.name}.{child.spawns + 1}"
        env = engine_env(child, endpoint=self.endpoint, session_dir=str(self.session_dir))
        try:
            child.spawn(env, self.inbox, self.config.max_line, self.pump)
        except (OSError, ValueError) as exc:  # ValueError: what the OS cannot take (a NUL in an argument, '=' in a variable name)
            child.spawn_error, child.pid, child.spool = spawn_error(child, exc), None, None
            decision = child.tracker.decide(failed=True, uptime=0.0, now=now)
            if decision.trigger is not Trigger.RETRY:  # what cannot start and will not be retried is given up
                decision = Decision(Trigger.GIVE_UP, reason=decision.reason)
            self._conclude(child, decision, now, child.spawn_error)
            return
        give_back(child.pid)  # type: ignore[arg-type]  # the open-files limit we started with, not our raised one
        if self.watchdog is not None:
            self.watchdog.watch(child.pid)  # type: ignore[arg-type]
        child.last_seen = child.last_active = now
        child.killed_at = child.kill_at = None
        child.check_at = now + _hello_wait(child.spec) if _sdk_settings(child.spec) else None
        self._move(child, Trigger.SPAWN, ", ".join(filter(None, [f"pid {child.pid}", reason])))
        child.started_at = now + STARTED_AFTER
        self._arm(child)

    def _stop(self, child: Child, intent: str, reason: str) -> None:
        if child.state in (State.STARTING, State.RUNNING, State.UNRESPONSIVE):
            child.stop_intent = intent
            self._move(child, Trigger.STOP, reason)
            child.terminate_group()
            timeout = child.spec.stop_timeout if child.spec.stop_timeout is not None else self.config.stop_timeout
            child.kill_at = time.monotonic() + timeout
            self._arm(child)
        elif child.state is State.STOPPING:
            if intent in ("stop", "shutdown"):  # a plain stop wins over a restart in progress
                child.stop_intent = intent
        elif child.state in (State.PENDING, State.BACKOFF):
            self._move(child, Trigger.STOP, reason)

    def _finish_exit(self, child: Child, now: float) -> None:
        info = child.exit
        assert info is not None
        child.exit_deadline = None
        recovered = recover_spool(child, self.accept, self._note)
        if child.hello and not child.bye:
            said = f"; {recovered} event(s) recovered from its crash spool" if recovered else ""
            self._note(child, "warning", f"the engine ended without its final bye{said}")
        self.publish(
            EngineExited(
                engine=child.name, ts=info.at, pid=child.pid or 0, code=info.code, signal=info.signal,
                signame=info.signame, runtime=max(0.0, info.at - child.started),
            )
        )
        self._release_group(child, now)
        intent, child.stop_intent = child.stop_intent, ""
        child.stopped_by_us = not child.remote and (intent in ("stop", "shutdown") or self.shutting_down)
        how = f"exit code {info.code}" if info.signal is None else f"killed by {info.signame}"
        if child.remote:
            decision = Decision(Trigger.EXIT, reason="a remote engine: ended on its host")
        elif child.stopped_by_us:
            decision = Decision(Trigger.EXIT, reason="stopped")
        elif intent == "restart":
            decision = Decision(Trigger.RETRY, delay=0.0, reason="restarting by request")
        else:
            failed = info.signal is not None or info.code != 0 or intent == "unresponsive"
            uptime = max(0.0, info.at - child.started)
            decision = child.tracker.decide(failed=failed, uptime=uptime, now=now, forced=intent == "unresponsive")
        self._conclude(child, decision, now, how)

    def _conclude(self, child: Child, decision: Decision, now: float, how: str) -> None:
        self._move(child, decision.trigger, f"{how}: {decision.reason}", decision.delay if decision.trigger is Trigger.RETRY else None)
        if decision.trigger is Trigger.RETRY:
            child.restart_at = now + decision.delay
            self._arm(child)
        elif child.spec.on_exit == "stop-all" and not child.stopped_by_us and not self.shutting_down:
            self.on_stop_all(f"{child.name} ended ({how}; on_exit = stop-all)")

    def _release_group(self, child: Child, now: float) -> None:
        """The engine is gone; processes it left in its group get its stop signal now and SIGKILL later."""
        if child.pid is None or not POSIX or child.remote:
            return
        if signal_group(child.pid, getattr(signal, child.spec.stop_signal)):
            timeout = child.spec.stop_timeout if child.spec.stop_timeout is not None else self.config.stop_timeout
            self.lingering[child.pid] = now + timeout
            self._note(child, "warning", f"the engine left processes in its group; they get {child.spec.stop_signal} now, SIGKILL in {timeout:g}s")
        elif self.watchdog is not None:
            self.watchdog.forget(child.pid)

    def _kill_lingering(self, group: int) -> None:
        signal_group(group, signal.SIGKILL)
        del self.lingering[group]
        if self.watchdog is not None:
            self.watchdog.forget(group)

    def kill_everything(self) -> None:
        """Last resort on the way out (also on errors): nothing may outlive us.

        Only groups known to be ours are signalled: those of processes not yet
        reaped, and leftovers found at an exit. The group id of an engine reaped
        long ago may belong to an unrelated process by now."""
        for child in self.children.values():
            if child.proc is not None and child.proc.returncode is None:
                child.kill_group()
            if child.proc is not None:
                try:
                    child.proc.wait(timeout=KILL_WAIT)
                except Exception:
                    pass
        for group in list(self.lingering):
            self._kill_lingering(group)
        for child in self.children.values():
            if child.acks is not None:
                child.acks.close()
                child.acks = None
            if child.spool is not None:
                child.spool.unlink(missing_ok=True)

    def _note(self, child: Child, level: str, message: str) -> None:
        self.publish(Log(engine=child.name, message=f"bus: {message}", level=level, stream="bus"))


def _sdk_settings(spec: EngineSpec) -> list[str]:
    """The settings only the SDK honours that this engine's config gave."""
    return [key for key in SDK_SETTINGS if key in spec.explicit]


def _hello_wait(spec: EngineSpec) -> float:
    """How long after its start an engine that says no hello is taken for one without the SDK."""
    return spec.heartbeat_timeout or STARTED_AFTER * 10


def _cannot_signal(child: Child) -> str:
    return f"remote: the supervisor cannot signal it (pid {child.pid} on {child.host or 'another host'}); stop it where it runs"
