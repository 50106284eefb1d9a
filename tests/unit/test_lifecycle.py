from __future__ import annotations

import pytest

from bus.supervisor.lifecycle import ALIVE, FINAL, TRANSITIONS, IllegalTransition, State, Trigger, next_state


def walk(*triggers: Trigger, start: State = State.PENDING) -> list[State]:
    states, state = [], start
    for trigger in triggers:
        state = next_state("a", state, trigger)
        states.append(state)
    return states


def test_a_crash_loop_ends_fatal() -> None:
    T = Trigger
    assert walk(T.SPAWN, T.RETRY, T.SPAWN, T.STARTED, T.RETRY, T.SPAWN, T.GIVE_UP) == [
        State.STARTING, State.BACKOFF, State.STARTING, State.RUNNING, State.BACKOFF, State.STARTING, State.FATAL,
    ]


def test_unresponsive_and_back() -> None:
    T = Trigger
    assert walk(T.SPAWN, T.STARTED, T.SILENT, T.ALIVE, T.SILENT, T.STOP, T.RETRY) == [
        State.STARTING, State.RUNNING, State.UNRESPONSIVE, State.RUNNING, State.UNRESPONSIVE, State.STOPPING, State.BACKOFF,
    ]


def test_stop_cancels_a_scheduled_restart_and_start_revives() -> None:
    T = Trigger
    assert walk(T.SPAWN, T.RETRY, T.STOP, T.SPAWN) == [State.STARTING, State.BACKOFF, State.EXITED, State.STARTING]
    assert walk(T.SPAWN, start=State.FATAL) == [State.STARTING]


def test_illegal_transition_names_engine_state_and_trigger() -> None:
    with pytest.raises(IllegalTransition, match="engine 'audit': no transition from state exited on started"):
        next_state("audit", State.EXITED, Trigger.STARTED)


def test_every_state_is_in_the_table_and_live_states_can_always_stop() -> None:
    assert set(TRANSITIONS) == set(State)
    for state in State:
        assert Trigger.STOP in TRANSITIONS[state]
    assert ALIVE.isdisjoint(FINAL)
