"""The engine SDK on its own: without a supervisor, with one that vanished, misused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from bus.protocol import Finding, LocalProtocolError, PhaseCompleted, PhaseStarted, Progress, Result, Screenshot
from bus.protocol.legacy import is_marker, parse_marker
from bus.engine import Engine

SDK_SCRIPT = textwrap.dedent(
    """
    from bus.engine import Engine
    with Engine("demo") as eng:
        with eng.phase("scan"):
            eng.progress(done=1, total=4, detail="one")
            eng.log("plain note")
            eng.log("careful", level="warning")
            eng.screenshot(b"\\x89PNG fake", name="a.png")
            eng.finding(url="/x", severity="high")
        eng.result(pages=4)
    """
)


def python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BUS_")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=timeout)


def test_without_a_supervisor_the_sdk_prints_legacy_markers() -> None:
    result = python(SDK_SCRIPT, {})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(is_marker(line) for line in lines)
    events = [parse_marker(line, engine="demo", ts=0.0) for line in lines]
    assert [type(e) for e in events] == [PhaseStarted, Progress, Screenshot, Finding, PhaseCompleted, Result]
    assert events[1].fields() == {"phase": "scan", "done": 1, "total": 4, "pct": 25.0, "detail": "one"}
    assert bytes(events[2].data) == b"\x89PNG fake"
    assert events[3].data == {"url": "/x", "severity": "high"}
    assert events[5].summary == {"pages": 4}
    assert result.stderr.splitlines() == ["plain note", "WARNING: careful"]


def test_fallback_off_prints_nothing() -> None:
    result = python(SDK_SCRIPT, {"BUS_FALLBACK": "off"})
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_vanished_supervisor_never_hangs_the_engine(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        from bus.engine import Engine
        eng = Engine("lonely")
        for i in range(50):
            eng.progress(done=i, total=50)   # droppable: dropped at once when full
        for i in range(5):
            eng.result(n=i)                   # essential: waits BUS_SEND_TIMEOUT once, then drops
        print(eng.sent, eng.dropped)
        eng.close()
        """
    )
    env = {"BUS_ENDPOINT": f"ipc://{tmp_path}/nobody", "BUS_SNDHWM": "4", "BUS_SEND_TIMEOUT": "0.3", "BUS_LINGER": "0.3"}
    result = python(code, env, timeout=30)
    assert result.returncode == 0, result.stderr
    sent, dropped = map(int, result.stdout.split())
    assert sent + dropped == 1 + 50 + 5  # hello, progress, results
    assert dropped > 0
    warnings = [line for line in result.stderr.splitlines() if "took nothing" in line]
    assert len(warnings) == 1 and "dropped a 'result' event" in warnings[0]
    assert "did not take the last events within 0.3s (BUS_LINGER); they may be lost" in result.stderr


def test_misuse_raises_clear_local_errors() -> None:
    eng = Engine("unit", fallback="off")
    with pytest.raises(LocalProtocolError, match="progress: pct must be between 0 and 100, got 120"):
        eng.progress(pct=120)
    with pytest.raises(LocalProtocolError, match="log.level must be one of"):
        eng.log("x", level="loud")
    with pytest.raises(LocalProtocolError, match="finding.data.obj must be nil, boolean, number"):
        eng.finding(obj=object())
    eng.close()
    eng.close()  # idempotent
    with pytest.raises(LocalProtocolError, match="engine 'unit' is closed; log not sent"):
        eng.log("late")
    with pytest.raises(LocalProtocolError, match=r"droppable kinds must be among finding, heartbeat, log, progress, screenshot, got phase.done, result \(phase changes"):
        Engine("unit", fallback="off", droppable=["progress", "result", "phase.done"])


def test_droppable_kinds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_DROPPABLE", "log, finding")
    with Engine("unit", fallback="off") as eng:
        assert eng._droppable == {"log", "finding"}
    monkeypatch.setenv("BUS_DROPPABLE", "none")
    with Engine("unit", fallback="off") as eng:
        assert eng._droppable == frozenset()
    monkeypatch.setenv("BUS_DROPPABLE", "bye")
    with pytest.raises(LocalProtocolError, match="got bye"):
        Engine("unit", fallback="off")


def test_an_engine_used_after_fork_refuses() -> None:
    eng = Engine("forked", fallback="off")
    pid = os.fork()
    if pid == 0:  # child: must refuse, and say why
        try:
            eng.log("from the child")
        except LocalProtocolError as exc:
            os._exit(0 if "make a new Engine after fork()" in str(exc) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    eng.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_phase_block_reports_an_error_and_the_engine_reports_the_exception() -> None:
    code = textwrap.dedent(
        """
        from bus.engine import Engine
        with Engine("crashy") as eng:
            with eng.phase("scan"):
                raise ValueError("bad page")
        """
    )
    result = python(code, {})
    assert result.returncode == 1
    events = [parse_marker(line, engine="crashy", ts=0.0) for line in result.stdout.splitlines()]
    assert [e.kind for e in events] == ["phase.start", "phase.error", "error"]
    assert events[1].message == "ValueError: bad page"
    assert (events[2].type, events[2].message, events[2].fatal) == ("ValueError", "bad page", True)
    assert "Traceback" in result.stderr  # Python's own report still goes to stderr


@pytest.fixture
def pull(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A PULL socket an Engine can push to, and its endpoint."""
    import zmq

    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/pull"
    sock.bind(endpoint)
    yield sock, endpoint
    sock.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"done": 3, "total": 12, "detail": "/about"},
        {"done": 2.5, "total": 10.0},
        {"pct": 40},
        {"pct": 99.5, "phase": "other", "detail": "x" * 1000},
        {"done": 12, "total": 12},  # computed pct 100: never droppable
        {"done": 7},
        {},
    ],
)
def test_the_fast_progress_path_sends_what_the_progress_event_would(kwargs: dict[str, object], pull: tuple[Any, str]) -> None:
    from bus.protocol import encode
    from bus.protocol.codec import batch_headers, decode, is_batch

    sock, endpoint = pull
    with Engine("fast", endpoint=endpoint, handle_sigterm=False) as eng:
        eng.phase_start("scan")
        eng.progress(**kwargs)  # type: ignore[arg-type]
    headers: list[bytes] = []  # each event's header frame, alone or in a batch
    while len(headers) < 3:
        assert sock.poll(10_000)
        frames = sock.recv_multipart()
        headers += batch_headers(frames[0]) if is_batch(frames[0]) else [frames[0]]
    sent = decode([headers[2]])
    expected = Progress(engine="fast", seq=3, ts=sent.ts, phase=str(kwargs.get("phase", "scan")), done=kwargs.get("done"), total=kwargs.get("total"), pct=kwargs.get("pct"), detail=str(kwargs.get("detail", "")))  # type: ignore[arg-type]
    assert sent == expected
    assert [headers[2]] == encode(expected)  # byte for byte the header the slow path makes


@pytest.mark.parametrize("kwargs", [{"done": -1}, {"done": float("nan")}, {"total": float("inf")}, {"pct": 101}, {"done": True}, {"detail": 5}, {"phase": "p" * 129}])
def test_bad_progress_is_refused_on_the_fast_path_too(kwargs: dict[str, object], pull: tuple[Any, str]) -> None:
    with Engine("fast", endpoint=pull[1], handle_sigterm=False) as eng:
        with pytest.raises(LocalProtocolError):
            eng.progress(**kwargs)  # type: ignore[arg-type]
