"""Engine lifecycle: the state table, and nothing else (pure, no I/O).

How it works: an engine is in one `State`; things that happen to it are
`Trigger`s; `TRANSITIONS[state][trigger]` is the next state. Anything not in
the table is a bug and raises `IllegalTransition` naming engine, state and
trigger. The supervisor publishes every transition as a `state` event.

    pending --spawn--> running --stop--> stopping --exit--> exited
       |                  \\------------exit-------------/    |
       \\--spawn_failed--> failed                 exited --spawn--> running
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    PENDING = "pending"    # defined, no process yet
    RUNNING = "running"    # a process exists
    STOPPING = "stopping"  # asked to stop, waiting for it to exit
    EXITED = "exited"      # the process ended and its exit was published
    FAILED = "failed"      # could not be started at all

    def __str__(self) -> str:
        return self.value


class Trigger(str, Enum):
    SPAWN = "spawn"
    SPAWN_FAILED = "spawn_failed"
    STOP = "stop"
    EXIT = "exit"

    def __str__(self) -> str:
        return self.value


TRANSITIONS: dict[State, dict[Trigger, State]] = {
    State.PENDING: {Trigger.SPAWN: State.RUNNING, Trigger.SPAWN_FAILED: State.FAILED, Trigger.STOP: State.EXITED},
    State.RUNNING: {Trigger.STOP: State.STOPPING, Trigger.EXIT: State.EXITED},
    State.STOPPING: {Trigger.STOP: State.STOPPING, Trigger.EXIT: State.EXITED},
    State.EXITED: {Trigger.SPAWN: State.RUNNING, Trigger.SPAWN_FAILED: State.FAILED, Trigger.STOP: State.EXITED},
    State.FAILED: {Trigger.STOP: State.FAILED},
}

FINAL = frozenset({State.EXITED, State.FAILED})
ALIVE = frozenset({State.RUNNING, State.STOPPING})


class IllegalTransition(RuntimeError):
    def __init__(self, engine: str, state: State, trigger: Trigger) -> None:
        super().__init__(f"engine {engine!r}: no transition from state {state} on {trigger}")


def next_state(engine: str, state: State, trigger: Trigger) -> State:
    try:
        return TRANSITIONS[state][trigger]
    except KeyError:
        raise IllegalTransition(engine, state, trigger) from None
