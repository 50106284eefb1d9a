"""Engine lifecycle: the state table, and nothing else (pure, no I/O).

How it works: an engine instance is in one `State`; what happens to it is a
`Trigger`; `TRANSITIONS[state][trigger]` is the next state. Anything not in the
table is a bug and raises `IllegalTransition` naming engine, state and trigger.
The supervisor publishes every transition as a `state` event. Whether an exit
leads to a restart is the restart policy's decision (restart.py); this table
only records its verdict (RETRY, GIVE_UP or EXIT).

    pending --spawn--> starting --started--> running <--alive-- unresponsive
                          |                  |  \\--silent---------^
                          |<------stop-------+--------> stopping
     exit (no restart) -> exited     retry -> backoff --spawn--> starting
     budget spent      -> fatal      (a manual start leaves exited/fatal too)

A remote engine (one the supervisor did not start: `bus attach`, or the SDK
pointed at its address) is never spawned or signalled: its hello attaches it
(-> running), silence past its heartbeat timeout makes it `lost`, a message
from it brings it back, its bye or its launcher's exit report ends it.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    PENDING = "pending"            # defined, never started
    STARTING = "starting"          # a process exists; not yet known to be well
    RUNNING = "running"            # said hello, or stayed up a moment
    UNRESPONSIVE = "unresponsive"  # alive, but silent past its heartbeat timeout
    STOPPING = "stopping"          # asked to stop; waiting for it to exit
    BACKOFF = "backoff"            # exited; a restart is scheduled
    EXITED = "exited"              # exited; no restart coming
    FATAL = "fatal"                # restarted too often, or cannot be started: given up
    LOST = "lost"                  # remote: nothing heard within its heartbeat timeout

    def __str__(self) -> str:
        return self.value


class Trigger(str, Enum):
    SPAWN = "spawn"        # a process was started
    STARTED = "started"    # hello received, or up long enough
    SILENT = "silent"      # heartbeat timeout passed
    ALIVE = "alive"        # an event came from an unresponsive engine
    STOP = "stop"          # asked to stop (request, shutdown, unresponsive restart)
    RETRY = "retry"        # exited (or could not start); restart scheduled
    EXIT = "exit"          # exited; no restart
    GIVE_UP = "give_up"    # exited (or could not start); budget spent, or no restart possible
    ATTACH = "attach"      # remote: a process of it said hello
    VANISH = "vanish"      # remote: heartbeat timeout passed

    def __str__(self) -> str:
        return self.value


S, T = State, Trigger
_ENDINGS = {T.RETRY: S.BACKOFF, T.EXIT: S.EXITED, T.GIVE_UP: S.FATAL}
_ALIVE_ENDINGS = {T.STOP: S.STOPPING, **_ENDINGS}

TRANSITIONS: dict[State, dict[Trigger, State]] = {
    S.PENDING: {T.SPAWN: S.STARTING, T.STOP: S.EXITED, T.RETRY: S.BACKOFF, T.GIVE_UP: S.FATAL, T.ATTACH: S.RUNNING},
    S.STARTING: {T.STARTED: S.RUNNING, **_ALIVE_ENDINGS},
    S.RUNNING: {T.SILENT: S.UNRESPONSIVE, T.ATTACH: S.RUNNING, T.VANISH: S.LOST, **_ALIVE_ENDINGS},
    S.UNRESPONSIVE: {T.ALIVE: S.RUNNING, **_ALIVE_ENDINGS},
    S.STOPPING: {T.STOP: S.STOPPING, **_ENDINGS},
    S.BACKOFF: {T.SPAWN: S.STARTING, T.STOP: S.EXITED, T.RETRY: S.BACKOFF, T.GIVE_UP: S.FATAL},
    S.EXITED: {T.SPAWN: S.STARTING, T.STOP: S.EXITED, T.RETRY: S.BACKOFF, T.GIVE_UP: S.FATAL, T.ATTACH: S.RUNNING},
    S.FATAL: {T.SPAWN: S.STARTING, T.STOP: S.FATAL, T.RETRY: S.BACKOFF, T.GIVE_UP: S.FATAL},
    S.LOST: {T.ALIVE: S.RUNNING, T.ATTACH: S.RUNNING, T.EXIT: S.EXITED, T.STOP: S.LOST},
}

ALIVE = frozenset({S.STARTING, S.RUNNING, S.UNRESPONSIVE, S.STOPPING})  # a process exists
FINAL = frozenset({S.EXITED, S.FATAL, S.LOST})                          # nothing will happen by itself


class IllegalTransition(RuntimeError):
    def __init__(self, engine: str, state: State, trigger: Trigger) -> None:
        super().__init__(f"engine {engine!r}: no transition from state {state} on {trigger}")


def next_state(engine: str, state: State, trigger: Trigger) -> State:
    try:
        return TRANSITIONS[state][trigger]
    except KeyError:
        raise IllegalTransition(engine, state, trigger) from None
