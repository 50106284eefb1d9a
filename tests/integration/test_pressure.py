"""An engine the bus cannot keep up with: the supervisor is frozen (SIGSTOP)
while the engine floods. Droppable kinds are dropped and counted, the count
shows in status while the engine still runs, and what must not be dropped
waits for room and arrives."""

from __future__ import annotations

import os
import select
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import zmq
from helpers import ENGINES, Watcher, bus, bus_result, finish, is_state, write_config

from bus import Subscriber
from bus.control_client import ControlClient
from bus.runtime import resolve


def read_fifo(path: Path, timeout: float) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"nothing on {path.name} within {timeout}s"
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)


@contextmanager
def flooded(tmp_path: Path, ctx: zmq.Context, *, kind: str, env: dict[str, str], droppable: list[str]) -> Iterator[tuple[Watcher, ControlClient, int, int, Path]]:
    """A supervisor frozen (SIGSTOP) while its one engine floods `kind` (tests/engines/pressure.py),
    then thawed. Yields (watcher, control, dropped, items sent, the go FIFO) while the run goes on."""
    go, told = tmp_path / "go", tmp_path / "told"
    os.mkfifo(go)
    os.mkfifo(told)
    engine = {"command": [sys.executable, str(ENGINES / "pressure.py"), str(go), str(told), kind], "env": env, "droppable": droppable, "heartbeat_timeout": 0}
    launcher = bus("up", "--plain", str(write_config(tmp_path, {"flood": engine})), stdout=open(tmp_path / "up.out", "w"))
    control = ControlClient(ctx, resolve(None), timeout=10)
    pid, frozen = 0, False
    try:
        with Subscriber(timeout=10, connect_timeout=60) as sub:
            watch = Watcher(sub)
            watch.wait(is_state("flood", "running"))
            pid = control.request("hello")[0]["pid"]
            os.kill(pid, signal.SIGSTOP)
            frozen = True
            with open(go, "w") as fifo:  # opens once the engine opened its end
                fifo.write("go\n")
            dropped, items = map(int, read_fifo(told, 120).split())
            os.kill(pid, signal.SIGCONT)
            frozen = False
            yield watch, control, dropped, items, go
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        control.close()
        if launcher.poll() is None:
            bus_result("down")  # a failed check: do not wait a minute for nothing
        finish(launcher, 60)


def test_an_engine_under_pressure_drops_only_what_it_may_and_says_so(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    # heartbeats too must wait: every drop is then a progress event
    with flooded(tmp_path, ctx, kind="progress", env={"BUS_SNDHWM": "20", "BUS_SEND_TIMEOUT": "60"}, droppable=["progress"]) as (watch, control, dropped, items, _):
        result = watch.wait(lambda e: e.kind == "result")
        assert result.fields()["summary"] == {"items": items}
        # Each time the bus takes events again after drops, a heartbeat tells the count so far.
        watch.wait(lambda e: e.kind == "heartbeat" and e.fields()["dropped"] == dropped > 0)
        engine_status = control.request("status")[0]["engines"][0]
        assert (engine_status["state"], engine_status["dropped"], engine_status["dropped_kinds"]) == ("running", dropped, {"progress": dropped})  # while it runs
        assert bus_result("down").returncode == 0
        events = watch.rest()
    mine = [e for e in events if e.engine == "flood" and e.seq is not None]
    assert [e.seq for e in mine] == list(range(1, len(mine) + 1)), "a drop leaves no hole in the engine's numbering"
    bye = mine[-1].fields()
    progress = [e.fields() for e in mine if e.kind == "progress"]
    assert progress[-1]["pct"] == 100.0, "the final progress waited for room"
    assert [p["done"] for p in progress[:-1]] == sorted({p["done"] for p in progress[:-1]}), "in order, once"
    assert len(progress) - 1 + dropped == items, "every progress event was delivered or counted as dropped"
    assert [e.kind for e in mine if e.kind in ("phase.start", "phase.done", "result")] == ["phase.start", "phase.done", "result"]
    assert bye == {"sent": len(mine) - 1, "dropped": dropped, "dropped_kinds": {"progress": dropped}}


def test_drops_of_a_kind_that_may_not_be_dropped_are_said_by_kind(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    """Before: a remote engine's log() waited its send timeout, then the SDK dropped 211-268 log lines,
    and the supervisor's note said it dropped events "of the kinds it may drop (progress,
    screenshots, heartbeats)"; status showed one total."""
    # a log waits half a second for room, then goes
    with flooded(tmp_path, ctx, kind="log", env={"BUS_SNDHWM": "20", "BUS_SEND_TIMEOUT": "0.5"}, droppable=[]) as (watch, control, dropped, items, go):
        watch.wait(lambda e: e.kind == "heartbeat" and e.fields()["dropped_kinds"] == {"log": dropped})  # told once there is room
        engine_status = control.request("status")[0]["engines"][0]
        assert engine_status["dropped_kinds"] == {"log": dropped} and dropped > 0, engine_status
        with open(go, "w") as fifo:
            fifo.write("go on\n")
        watch.wait(lambda e: e.kind == "result")
        assert bus_result("down").returncode == 0
        events = watch.rest()
    notes = [e.fields()["message"] for e in events if e.kind == "log" and e.fields()["stream"] == "bus"]
    assert f"bus: the engine dropped {dropped} event(s) because the bus did not keep up: {dropped} log; log may not be dropped for it: those waited BUS_SEND_TIMEOUT for room first" in notes, notes
    mine = [e for e in events if e.engine == "flood" and e.kind == "log" and e.fields()["stream"] == "engine"]
    assert len(mine) + dropped == items, "every log line was delivered or counted as dropped"
