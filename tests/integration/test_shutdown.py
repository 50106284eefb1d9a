"""Stopping: Ctrl-C, engines that ignore SIGTERM, engines killed mid-stream.
Nothing may be left running (the runtime_dir fixture checks every process)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from helpers import ENGINES, Collector, bus, results_from, scripted, write_config


def test_ctrl_c_stops_engines_gracefully_and_publishes_their_exits(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"a": scripted("--events", "20", "--hold"), "b": scripted("--events", "30", "--hold")})
    watcher = Collector(results_from({"a", "b"}))
    watcher.start()
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    assert watcher.reached.wait(60)
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(60) == 130
    events = watcher.finish()
    for name in ("a", "b"):
        mine = [e for e in events if e.engine == name]
        kinds = [e.kind for e in mine]
        assert kinds.index("bye") < kinds.index("exit"), "the engine flushed before its exit was published"
        assert next(e for e in mine if e.kind == "exit").fields()["code"] == 143
        states = [e.fields()["state"] for e in mine if e.kind == "state"]
        assert states == ["starting", "running", "stopping", "exited"]
    assert events[-1].kind == "sup.stop" and events[-1].fields() == {"code": 130, "reason": "signal SIGINT"}


def test_an_engine_ignoring_sigterm_is_killed_at_the_stop_timeout(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"stubborn": [sys.executable, str(ENGINES / "stubborn.py")]}, stop_timeout=1)
    watcher = Collector(lambda e: e.kind == "log" and "ignoring SIGTERM" in e.fields()["message"])
    watcher.start()
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    assert watcher.reached.wait(60)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(60) == 143
    events = watcher.finish()
    exit_event = next(e for e in events if e.kind == "exit")
    assert exit_event.fields()["signal"] == signal.SIGKILL and exit_event.fields()["signame"] == "SIGKILL"
    assert exit_event.fields()["runtime"] >= 1.0  # it had its grace period first


def test_an_engine_killed_mid_stream_delivers_everything_and_says_so(runtime_dir: Path, tmp_path: Path) -> None:
    # Events still queued inside the killed process die with it; its crash spool
    # gives them back, and the supervisor says how many it recovered.
    config = write_config(tmp_path, {"doomed": scripted("--events", "400", "--shots", "4", "--kill-self-after", "250"), "fine": scripted("--events", "10")})
    watcher = Collector()
    watcher.start()
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    assert launcher.wait(60) == 1  # one engine failed
    events = watcher.finish()
    doomed = [e for e in events if e.engine == "doomed"]
    assert [e.seq for e in doomed if e.seq is not None] == list(range(1, 252))
    assert "bye" not in {e.kind for e in doomed}
    note = doomed[-3]  # the crash is said, not hidden
    assert note.kind == "log" and note.fields()["stream"] == "bus" and "without its final bye" in note.fields()["message"]
    exit_event = doomed[-2]
    assert exit_event.kind == "exit" and exit_event.fields()["signame"] == "SIGKILL"
    assert doomed[-1].kind == "state" and doomed[-1].fields()["state"] == "exited"
    fine = [e for e in events if e.engine == "fine"]
    assert [e.seq for e in fine if e.seq is not None] == list(range(1, 16))  # hello, phase, 10 steps, phase, result, bye
    assert next(e for e in fine if e.kind == "exit").fields()["code"] == 0


def test_losses_an_engine_reports_are_made_visible(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"handmade": [sys.executable, str(ENGINES / "handmade.py")]})
    watcher = Collector()
    watcher.start()
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    assert launcher.wait(60) == 0
    events = watcher.finish()
    mine = [e for e in events if e.engine == "handmade"]
    assert [e.kind for e in mine if e.seq is not None] == ["hello", "progress", "screenshot", "bye"]
    assert bytes(next(e for e in mine if e.kind == "screenshot").fields()["data"]) == b"\x89PNG handmade"
    notes = [(e.fields()["level"], e.fields()["message"]) for e in mine if e.kind == "log" and e.fields()["stream"] == "bus"]
    assert notes == [
        ("error", "bus: 1 event(s) this engine sent never arrived"),
        ("warning", "bus: the engine dropped 5 event(s) because the bus did not keep up: 5 of kinds it did not say"),
    ]
