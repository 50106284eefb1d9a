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

    def __str__(self) -> str:
        return self.value


S, T = State, Trigger
_ENDINGS = {T.RETRY: S.BACKOFF, T.EXIT: S.EXITED, T.GIVE_UP: S.FATAL}
_ALIVE_ENDINGS = {T.STOP: S.STOPPING, **_ENDINGS}

TRANSITIONS: dict[State, dict[Trigger, State]] = {
    S.PENDING: {T.SPAWN: S.STARTING, T.STOP: S.EXITED, T.RETRY: S.BACKOFF, T.GIVE_UP: S.FATAL},
    S.STARTING: {T.STARTED: S.RUNNING, **_ALIVE_ENDINGS},
    S.RUNNING: {T.SILENT: S.UNRESPONSIVE, **_ALIVE_ENDINGS},
    S.UNRESPONSIVE: {T.ALIVE: S.RUNNING, **_ALIVE_ENDINGS},
    S.STOPPING: {T.STOP: S.STOPPING, **_ENDINGS},
    S.BACKOFF: {T.SPAWN: S.STARTING, T.STOP: S.EXITED, T.RETRY: S.BACKOFF, T.GIVE_UP: S.FATAL},
    S.EXITED: {T.SPAWN: S.STARTING, T.STOP: S.EXITED, T.RETRY: S.BACKOFF, T.GIVE_UP: S.FATAL},
    S.FATAL: {T.SPAWN: S.STARTING, T.STOP: S.FATAL, T.RETRY: S.BACKOFF, T.GIVE_UP: S.FATAL},
}

ALIVE = frozenset({S.STARTING, S.RUNNING, S.UNRESPONSIVE, S.STOPPING})  # a process exists
FINAL = frozenset({S.EXITED, S.FATAL})                                   # nothing will happen by itself


class IllegalTransition(RuntimeError):
    def __init__(self, engine: str, state: State, trigger: Trigger) -> None:
        super().__init__(f"engine {engine!r}: no transition from state {state} on {trigger}")


def next_state(engine: str, state: State, trigger: Trigger) -> State:
    try:
        return TRANSITIONS[state][trigger]
    except KeyError:
        raise IllegalTransition(engine, state, trigger) from None
