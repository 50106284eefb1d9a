"""Every event kind is known to every view: the terminal's lines, status and snapshots, the web board.

A kind added to bus/protocol/events.py that one of them does not name fails here,
instead of being silently not shown (docs/ARCHITECTURE.md, "Add an event kind").
"""

from __future__ import annotations

import pytest
from test_protocol import SAMPLES

from bus.cli import render
from bus.protocol import EngineState
from bus.protocol.events import KINDS
from bus.supervisor.lifecycle import State
from bus.view import TAKES, EngineView
from bus.web.board import Card


def test_the_samples_cover_every_kind() -> None:
    assert set(SAMPLES) == set(KINDS)


@pytest.mark.parametrize("registry", [render._DESCRIBE, TAKES, Card.KINDS], ids=["terminal", "status", "web board"])
def test_each_view_names_every_kind(registry: dict[str, object]) -> None:
    assert sorted(set(KINDS) - set(registry)) == [], "kinds this view does not name"
    assert sorted(set(registry) - set(KINDS)) == [], "names of kinds that do not exist"


def test_the_terminal_names_every_state() -> None:
    assert set(render._STATES) == {str(s) for s in State}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_terminal_shows_a_line_for_a_kind_exactly_when_it_says_so(kind: str) -> None:
    line = render.describe(SAMPLES[kind])
    assert (line is not None) == (render._DESCRIBE[kind] is not None) or kind == "state"
    if line is not None:
        assert line.strip()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_status_keeps_something_of_a_kind_exactly_when_it_says_so(kind: str) -> None:
    fresh, view = EngineView("audit.2"), EngineView("audit.2")
    view.take(SAMPLES[kind], gseq=5)
    kept = {k: v for k, v in {**view.status(), **view.seen()}.items() if k not in ("last_event", "events")}
    before = {k: v for k, v in {**fresh.status(), **fresh.seen()}.items() if k not in ("last_event", "events")}
    assert (kept != before) == (TAKES[kind] is not None)


@pytest.mark.parametrize("kind", sorted(k for k in KINDS if k != "screenshot"))
def test_the_web_card_changes_for_a_kind_exactly_when_it_says_so(kind: str) -> None:
    card = Card("audit.2")
    card.take()  # (a new card is all dirty: clean it)
    card.apply(SAMPLES[kind])
    changed = set(card.dirty) - {"events", "updated"}
    assert bool(changed) == (Card.KINDS[kind] is not None), changed


def test_every_state_event_is_a_line_or_said_not_to_be() -> None:
    for state in State:
        event = EngineState(engine="e", state=str(state), reason="why", delay=1.0, ended="exit code 1", cause="attached")
        described = render._STATES[str(state)]
        assert (render.describe(event) is not None) == (described is not None) or str(state) == "running"
