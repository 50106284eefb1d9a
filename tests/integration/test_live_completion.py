"""Shell completion of engine and queue names, asked of a real running supervisor
(`bus up`, then `bus down`); what completes with none running: tests/unit/test_completion.py."""

from __future__ import annotations

import sys
from pathlib import Path

from bus import Bus
from helpers import ENGINES, completions, running, write_config

WORKER = [sys.executable, str(ENGINES / "worker.py")]


def test_engine_and_queue_names_complete_from_the_running_supervisor(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"audit": {"command": WORKER, "instances": 2, "queue": "library"}, "crawl": {"command": WORKER, "queue": "scans"}})
    with running("up", "--plain", "--keep", str(config), stdout=open(tmp_path / "up.out", "w"), stderr=open(tmp_path / "up.err", "w")):
        with Bus(timeout=60) as client:  # (waits for the supervisor to answer: it runs, and knows its engines)
            assert {e["name"] for e in client.status()["engines"]} == {"audit.1", "audit.2", "crawl"}
        engines = ["audit", "crawl", "audit.1", "audit.2"]
        for line in ("bus stop ", "bus start ", "bus restart ", "bus forget ", "bus tail -e ", "bus tail default --engine "):
            assert completions(line) == engines, line
        assert completions("bus stop au") == ["audit", "audit.1", "audit.2"]
        assert completions("bus restart audit.") == ["audit.1", "audit.2"]
        assert completions("bus tail nosuch -e ") == []  # another session: none runs there
        assert completions("bus tail default -e a") == ["audit", "audit.1", "audit.2"]  # (the ADDRESS before an option's value)
        assert completions("bus jobs ") == ["library", "scans"]
        assert completions("bus submit default ") == ["library", "scans"]
        assert completions("bus submit s") == ["scans"]
        assert completions("bus submit ") == ["library", "scans", "default"]  # a queue here, or a session
