"""Liveness that means the work goes on, for every engine.

Before: an SDK engine whose main thread was stuck stayed `running` for ever (its
heartbeat thread kept beating), and a program without the SDK was never
checked (SIGSTOPped with `heartbeat_timeout = 5` it stayed `running`, and
nothing said that the key does nothing there)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from helpers import ENGINES, Watcher, is_state, running, write_config

from bus import Subscriber

TIMEOUT = 2.0


def stillness(mode: str, **keys: object) -> dict[str, object]:
    return {"command": [sys.executable, str(ENGINES / "stillness.py"), mode], **keys}


def run_until(config: Path, tmp_path: Path, check):  # type: ignore[no-untyped-def]
    with running("up", "--plain", "--keep", str(config), stdout=open(tmp_path / "up.out", "w")):
        with Subscriber(timeout=10, connect_timeout=60, kinds=["state", "log"]) as sub:
            check(Watcher(sub))


def states(watcher: Watcher, engine: str) -> list[str]:
    return [e.fields()["state"] for e in watcher.events if e.kind == "state" and e.engine == engine]  # type: ignore[union-attr]


def test_an_sdk_engine_whose_main_thread_hangs_is_unresponsive_and_restarted(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {
        "hang": stillness("hang", heartbeat_timeout=TIMEOUT, on_unresponsive="restart", restart="never"),
        "waits": stillness("wait", heartbeat_timeout=TIMEOUT),   # declared its wait: not stuck
        "spins": stillness("spin", heartbeat_timeout=TIMEOUT),   # busy, silent: working
    })

    def check(watcher: Watcher) -> None:
        running = watcher.wait(is_state("hang", "running"))
        started = time.monotonic()
        stuck = watcher.wait(is_state("hang", "unresponsive"), timeout=30)
        took = time.monotonic() - started
        reason = stuck.fields()["reason"]  # type: ignore[union-attr]
        assert "its work has been still for" in reason and "main thread used no CPU" in reason, reason
        assert took < TIMEOUT + 2 * TIMEOUT / 3 + 1.5, f"unresponsive only after {took:.1f}s (timeout {TIMEOUT}s, a beat every {TIMEOUT / 3:.2f}s)"
        mark = watcher.mark()
        watcher.wait(is_state("hang", "stopping"), since=mark)
        again = watcher.wait(is_state("hang", "running"), since=mark, timeout=30)
        assert again.fields()["pid"] != running.fields()["pid"]  # type: ignore[union-attr]  # restarted, restart = "never" notwithstanding
        watcher.wait(is_state("hang", "unresponsive"), since=watcher.mark(), timeout=30)  # and caught again
        for engine in ("waits", "spins"):
            assert states(watcher, engine)[-1] == "running", (engine, states(watcher, engine))

    run_until(config, tmp_path, check)


def test_a_plain_program_that_goes_quiet_is_unresponsive_and_restarted(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {
        "quiet": {"command": ["sh", "-c", "echo start; exec sleep 1000"], "idle_timeout": TIMEOUT, "on_unresponsive": "restart"},
        "chatty": {"command": ["sh", "-c", "while true; do echo tick; sleep 0.3; done"], "idle_timeout": TIMEOUT},
        "told": {"command": ["sh", "-c", "exec sleep 1000"], "heartbeat_timeout": TIMEOUT},  # a key only the SDK honours
    })

    def check(watcher: Watcher) -> None:
        first = watcher.wait(is_state("quiet", "running"))
        started = time.monotonic()
        stuck = watcher.wait(is_state("quiet", "unresponsive"), timeout=30)
        took = time.monotonic() - started
        assert stuck.fields()["reason"].startswith("no event and no output line for ") and f"(idle_timeout = {TIMEOUT:g})" in stuck.fields()["reason"]  # type: ignore[union-attr]
        assert TIMEOUT - 1.1 <= took < TIMEOUT + 1.5, took  # (running came up to 1 s after its start)
        mark = watcher.mark()
        again = watcher.wait(is_state("quiet", "running"), since=mark, timeout=30)
        assert again.fields()["pid"] != first.fields()["pid"]  # type: ignore[union-attr]
        note = watcher.wait(lambda e: e.kind == "log" and e.engine == "told" and e.fields()["stream"] == "bus", since=0)  # type: ignore[union-attr]
        assert note.fields()["message"] == f"bus: heartbeat_timeout does nothing for this engine: it said no hello within {TIMEOUT:g}s of starting, so it does not use the engine SDK; idle_timeout watches a program that only prints"  # type: ignore[union-attr]
        assert "unresponsive" not in states(watcher, "chatty")

    run_until(config, tmp_path, check)
