from __future__ import annotations

import base64

import pytest

from bus.protocol import (
    EngineError,
    Finding,
    LocalProtocolError,
    PhaseCompleted,
    PhaseFailed,
    PhaseStarted,
    Progress,
    RemoteProtocolError,
    Result,
    Screenshot,
)
from bus.protocol.legacy import format_marker, is_marker, parse_marker


def parse(line: str):
    return parse_marker(line, engine="old", ts=5.0)


def test_the_plain_marker_from_the_issue_is_progress() -> None:
    event = parse('##PROGRESS:{"phase":"scan","pct":40}')
    assert event == Progress(engine="old", ts=5.0, phase="scan", pct=40.0)


def test_markers_of_the_older_veritas_shape() -> None:
    # {"phase", "step", "pct", "detail"} plus a type, as the audit runner printed them
    event = parse('##PROGRESS:{"type": "progress", "phase": "crawl", "step": "fetch", "pct": 30, "detail": "page 3"}')
    assert isinstance(event, Progress)
    assert (event.phase, event.pct, event.detail) == ("crawl", 30.0, "fetch: page 3")
    assert parse('##PROGRESS:{"type":"phase_start","phase":"crawl"}') == PhaseStarted(engine="old", ts=5.0, phase="crawl")
    assert parse('##PROGRESS:{"type":"phase_complete","phase":"crawl"}') == PhaseCompleted(engine="old", ts=5.0, phase="crawl")
    failed = parse('##PROGRESS:{"type":"phase_error","phase":"crawl","error":"dns"}')
    assert failed == PhaseFailed(engine="old", ts=5.0, phase="crawl", message="dns")


def test_screenshot_marker_carries_base64_and_becomes_raw_bytes() -> None:
    png = b"\x89PNG\r\n\x1a\nabc"
    event = parse('##PROGRESS:{"type":"screenshot","name":"a.png","data":"%s"}' % base64.b64encode(png).decode())
    assert isinstance(event, Screenshot)
    assert (event.data, event.size, event.mime) == (png, len(png), "image/png")


def test_overshooting_percent_is_clamped_not_refused() -> None:
    assert parse('##PROGRESS:{"pct": 130}').pct == 100.0
    assert parse('##PROGRESS:{"pct": -5}').pct == 0.0


def test_leading_whitespace_and_marker_ts_are_honoured() -> None:
    assert is_marker("   ##PROGRESS:{}")
    assert not is_marker("progress: ##PROGRESS:{}")
    assert parse('  ##PROGRESS:{"ts": 12.5}').ts == 12.5


@pytest.mark.parametrize(
    "line",
    [
        "##PROGRESS:{not json",
        "##PROGRESS:[1, 2]",
        '##PROGRESS:{"type":"telepathy"}',
        '##PROGRESS:{"pct":"forty"}',
        '##PROGRESS:{"type":"phase_start"}',
        '##PROGRESS:{"type":"screenshot","data":"***"}',
        '##PROGRESS:{"type":"log","message":"x","level":"shouting"}',
    ],
)
def test_unusable_markers_raise_the_remote_error(line: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse(line)
    assert info.value.reason == "bad-marker"


@pytest.mark.parametrize(
    "event",
    [
        Progress(engine="old", ts=5.0, phase="scan", done=2, total=8, detail="x"),
        PhaseStarted(engine="old", ts=5.0, phase="scan", detail="d"),
        PhaseCompleted(engine="old", ts=5.0, phase="scan", elapsed=1.25),
        PhaseFailed(engine="old", ts=5.0, phase="scan", message="boom"),
        Finding(engine="old", ts=5.0, data={"url": "/", "n": 3}),
        Result(engine="old", ts=5.0, summary={"pages": 2}),
        EngineError(engine="old", ts=5.0, message="bad", type="KeyError", fatal=True),
        Screenshot(engine="old", ts=5.0, name="s.png", size=3, data=b"\x00\x01\x02"),
    ],
)
def test_sdk_fallback_markers_parse_back_to_the_same_event(event) -> None:
    line = format_marker(event)
    assert line is not None and line.startswith("##PROGRESS:")
    assert parse(line) == event


def test_kinds_without_a_marker_form_print_nothing() -> None:
    from bus.protocol import EngineHello, Heartbeat, Log

    assert format_marker(Log(message="x")) is None
    assert format_marker(Heartbeat()) is None
    assert format_marker(EngineHello(pid=1)) is None


def test_an_output_line_is_the_same_log_the_full_checks_make_and_publishes() -> None:
    # Issue 20 added the common field `job`; the output-line fast path built its Log
    # without it and every output line raised in the supervisor's publish (found by the bench).
    from bus.protocol import Log, encode_published
    from bus.protocol.legacy import line_event

    event, _ = line_event("legacy", "stdout", "a plain line", 0, 1_700_000_000.5)
    full = Log(engine="legacy", ts=1_700_000_000.5, message="a plain line", stream="stdout")
    assert event == full
    assert encode_published(event) == encode_published(full)
