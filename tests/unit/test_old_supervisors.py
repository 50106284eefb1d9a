"""Events and replies from a supervisor before 0.2 (no `cause`, `ended`, `remote`, `outcome`)
read as they did: a journal keeps old runs, and `bus stop` may talk to an older supervisor."""

from __future__ import annotations

from bus.cli.engines import _outcome_in_words
from bus.cli.render import describe
from bus.protocol import EngineState
from bus.view import EngineView


def test_an_old_attach_and_backoff_read_as_before() -> None:
    attached = EngineState(engine="far", state="running", reason="remote: attached from h2, pid 7 (key eng)")
    assert describe(attached) == "attached (h2, pid 7 (key eng))"
    backoff = EngineState(engine="e", state="backoff", reason="exit code 1: restart 2 in 0.50s", restarts=2, delay=0.5)
    assert describe(backoff) == "exit code 1; restart 2 in 0.50s"
    new = EngineState(engine="e", state="backoff", reason="cannot start 'e': command not found: x: restart 1 in 0.50s", restarts=1, delay=0.5, cause="cannot-start", ended="cannot start 'e'")
    assert describe(new) == "cannot start 'e'; restart 1 in 0.50s"


def test_an_old_remote_engine_is_remote_in_a_hub_s_view() -> None:
    view = EngineView("far", origin="east")
    view.take(EngineState(engine="far", state="running", reason="remote: attached from h2, pid 7 (local)"), gseq=3)
    assert view.status()["remote"] is True
    local = EngineView("near", origin="east")
    local.take(EngineState(engine="near", state="running", reason="said hello", cause="hello"), gseq=4)
    assert local.status()["remote"] is False


def test_an_old_reply_s_words_give_its_outcome() -> None:
    said = _outcome_in_words({"a.1": "already running", "far": "remote: the supervisor cannot signal it", "a.2": "starting"})
    assert said == {
        "a.1": {"state": "running", "already": True, "remote": False},
        "far": {"state": "", "already": False, "remote": True},
        "a.2": {"state": "starting", "already": False, "remote": False},
    }
