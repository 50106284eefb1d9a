"""The fleet's timers, driven by hand with a real process (no sockets)."""

from __future__ import annotations

import select
import sys
import tempfile
import time
from pathlib import Path

from bus.protocol import Event
from bus.supervisor.children import Inbox
from bus.supervisor.config import EngineSpec, SupervisorConfig
from bus.supervisor.fleet import Fleet
from bus.supervisor.lifecycle import State


def test_a_graceful_stop_leaves_no_timer_behind() -> None:
    spec = EngineSpec(name="sleeper", command=(sys.executable, "-c", "import time; time.sleep(60)"), stop_timeout=30)
    published: list[Event] = []
    inbox = Inbox()
    fleet = Fleet(SupervisorConfig(engines=(spec,), drain_grace=0.0), publish=published.append, accept=lambda c, e: None, inbox=inbox)
    with tempfile.TemporaryDirectory(prefix="bf") as run_dir:
        fleet.open(endpoint="ipc:///nonexistent", session_dir=Path(run_dir), watchdog=None)
        fleet.start_all()
        fleet.tick(time.monotonic())  # engines start a batch per tick
        child = fleet.children["sleeper"]
        try:
            fleet.stop("sleeper")
            assert child.state is State.STOPPING and child.kill_at is not None
            while child.state is State.STOPPING:  # feed the fleet what the loop would
                assert select.select([inbox.fileno()], [], [], 10)[0], "the process did not exit"
                for item in inbox.drain():
                    if item[0] == "exit":
                        fleet.exited(item[1], item[2], item[3])
                    elif item[0] == "eof":
                        fleet.streams_closed(item[1], item[2])
                fleet.tick(time.monotonic())
        finally:
            fleet.kill_everything()
            fleet.close()
            inbox.close()
    assert child.state is State.EXITED and child.exit is not None and child.exit.signal == 15
    assert fleet.tick(time.monotonic() + 3600) is None, "nothing is due any more: the loop may sleep"
    assert [e.fields()["state"] for e in published if e.kind == "state"] == ["starting", "stopping", "exited"]
