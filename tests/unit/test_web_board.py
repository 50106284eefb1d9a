"""The dashboard's board: cards from events, bounded, and updates that rebuild the snapshot."""

from __future__ import annotations

import copy
from typing import Any

import pytest

pytest.importorskip("aiohttp")  # bus.web is the web extra; the board itself needs only the core

from bus.protocol import EngineExited, EngineState, Finding, Heartbeat, Log, PhaseStarted, Progress, Result, Screenshot, SupervisorStarted, SupervisorStopped
from bus.web.board import FINDINGS, LOG_LINES, SHOTS_KEPT, Board


def stamped(events: list[Any]) -> list[Any]:
    for gseq, event in enumerate(events, 1):
        object.__setattr__(event, "gseq", gseq)
    return events


def a_run(engines: int = 2, steps: int = 40) -> list[Any]:
    names = [f"e{i}" for i in range(engines)]
    events: list[Any] = [SupervisorStarted(run="r1", pid=1, engines=names, ts=0.0)]
    for name in names:
        events += [EngineState(engine=name, state="running", prev="starting", pid=100, reason="said hello", ts=0.0), PhaseStarted(engine=name, phase="scan", ts=0.0)]
    for i in range(1, steps + 1):
        for name in names:
            events.append(Progress(engine=name, phase="scan", done=i, total=steps, ts=float(i)))
            if i % 3 == 0:
                events.append(Log(engine=name, message=f"line {i}", ts=float(i)))
            if i % 2 == 0:
                events.append(Finding(engine=name, data={"i": i, "raw": b"\x00\x01"}, ts=float(i)))
            if i % 10 == 0:
                events.append(Screenshot(engine=name, name=f"s{i}.png", size=3, data=b"png", ts=float(i)))
            events.append(Heartbeat(engine=name, ts=float(i)))
    for name in names:
        events += [Result(engine=name, summary={"steps": steps}, ts=steps + 1.0), EngineExited(engine=name, pid=100, code=0, runtime=41.0, ts=steps + 1.0)]
    events.append(SupervisorStopped(code=0, reason="all engines exited", ts=steps + 2.0))
    return stamped(events)


def merge(view: dict[str, Any], update: dict[str, Any]) -> None:
    """What the page does with an update (app.js takeUpdate): the head replaced, each card patched field by field."""
    for key in ("address", "run", "gseq", "ended", "connected", "note"):
        view[key] = update[key]
    if "supervisor" in update:
        view["supervisor"] = update["supervisor"]
    cards = {card["name"]: card for card in view["engines"]}
    for patch in update["engines"]:
        if patch["name"] in cards:
            cards[patch["name"]].update(patch)
        else:
            view["engines"].append(patch)
            cards[patch["name"]] = patch


def test_cards_hold_what_the_page_shows_and_stay_bounded() -> None:
    board = Board("session 'default'")
    board.begin("r1")
    for event in a_run(steps=40):
        board.apply(event)
    snap = board.snapshot()
    assert snap["run"] == "r1" and snap["ended"] and snap["gseq"] == len(a_run(steps=40))
    card = snap["engines"][0]
    assert card["name"] == "e0" and card["state"] == "running" and card["exit"] == {"code": 0, "signal": None, "signame": "", "runtime": 41.0}
    assert card["progress"] == {"phase": "scan", "done": 40, "total": 40, "pct": 100.0, "detail": ""}
    assert card["rate"] == {"value": 1.0, "unit": "units"} and card["eta"] == 0.0
    assert [line["message"] for line in card["logs"]] == [f"line {i}" for i in range(3, 41, 3)][-LOG_LINES:]
    assert card["findings_total"] == 20 and len(card["findings"]) == min(20, FINDINGS)
    assert card["findings"][-1]["data"] == {"i": 40, "raw": {"base64": "AAE="}}
    assert card["result"] == {"steps": 40} and card["shots_total"] == 4
    assert card["screenshot"]["url"] == f"shots/r1/{card['screenshot']['gseq']}" and card["screenshot"]["name"] == "s40.png"
    assert len(board.shots) == 2 * SHOTS_KEPT  # the newest few per engine, no more
    assert board.shot(card["screenshot"]["gseq"]) == ("image/png", b"png")
    assert card["events"] == len([e for e in a_run(steps=40) if e.engine == "e0" and e.KIND != "heartbeat"])


def test_the_rate_and_eta_come_from_the_engines_clock() -> None:
    board = Board("x")
    board.begin("r")
    for i, ts in enumerate([100.0, 101.0, 102.0, 104.0], 1):
        board.apply(Progress(engine="a", phase="p", done=i * 10, total=100, ts=ts, gseq=i))
    card = board.snapshot()["engines"][0]
    assert card["rate"] == {"value": 7.5, "unit": "units"}  # 30 units in 4 s
    assert card["eta"] == pytest.approx(60 / 7.5, abs=0.1)
    board.apply(Progress(engine="a", phase="q", pct=10.0, ts=105.0, gseq=5))  # a new phase, in percent: starts over
    board.apply(Progress(engine="a", phase="q", pct=30.0, ts=107.0, gseq=6))
    card = board.snapshot()["engines"][0]
    assert card["rate"] == {"value": 10.0, "unit": "%"} and card["eta"] == 7.0


def test_updates_applied_as_the_page_applies_them_rebuild_the_snapshot() -> None:
    """Whatever moment a page connects at, snapshot + every later update == the board."""
    events = a_run(engines=3, steps=30)
    for joined_at in (0, 7, len(events) // 2, len(events) - 1):
        board = Board("x")
        board.begin("r1")
        for event in events[:joined_at]:
            board.apply(event)
        board.changes()
        view = copy.deepcopy(board.snapshot())
        for i, event in enumerate(events[joined_at:]):
            board.apply(event)
            if i % 5 == 0 and (update := board.changes()) is not None:
                merge(view, copy.deepcopy(update))
        if (update := board.changes()) is not None:
            merge(view, copy.deepcopy(update))
        assert view == board.snapshot()
        assert board.changes() is None  # nothing new: nothing sent


def test_an_update_carries_only_what_changed() -> None:
    board = Board("x")
    board.begin("r")
    board.apply(Progress(engine="a", phase="p", done=1, total=10, ts=1.0, gseq=1))
    board.changes()
    board.apply(Progress(engine="a", phase="p", done=2, total=10, ts=2.0, gseq=2))
    update = board.changes()
    assert update is not None and set(update["engines"][0]) == {"name", "progress", "rate", "eta", "events", "updated"}
    board.apply(Heartbeat(engine="a", ts=3.0, gseq=3))  # changes no card
    update = board.changes()
    assert update is not None and update["engines"] == [] and update["gseq"] == 3


def test_only_raster_images_are_served_as_images() -> None:
    board = Board("x")
    board.begin("r")
    for gseq, mime in enumerate(["text/html", "image/svg+xml", "image/jpeg"], 1):
        board.apply(Screenshot(engine=f"e{gseq}", name="x", mime=mime, size=1, data=b"<", ts=1.0, gseq=gseq))
    assert [board.shot(g)[0] for g in (1, 2, 3)] == ["application/octet-stream", "application/octet-stream", "image/jpeg"]  # type: ignore[index]


def test_a_new_run_clears_the_board() -> None:
    board = Board("x")
    board.begin("r1")
    for event in a_run(engines=1, steps=10):
        board.apply(event)
    board.begin("r2")
    snap = board.snapshot()
    assert snap["run"] == "r2" and snap["engines"] == [] and snap["gseq"] == 0 and not snap["ended"] and board.shots == {}
