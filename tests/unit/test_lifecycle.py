from __future__ import annotations

import pytest

from supervisor.lifecycle import TRANSITIONS, IllegalTransition, State, Trigger, next_state


def test_normal_life() -> None:
    state = State.PENDING
    for trigger, expected in [(Trigger.SPAWN, State.RUNNING), (Trigger.STOP, State.STOPPING), (Trigger.EXIT, State.EXITED), (Trigger.SPAWN, State.RUNNING)]:
        state = next_state("a", state, trigger)
        assert state is expected


def test_illegal_transition_names_engine_state_and_trigger() -> None:
    with pytest.raises(IllegalTransition, match="engine 'audit': no transition from state failed on spawn"):
        next_state("audit", State.FAILED, Trigger.SPAWN)


def test_every_state_is_in_the_table() -> None:
    assert set(TRANSITIONS) == set(State)
