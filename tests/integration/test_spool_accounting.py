"""An engine SIGKILLed while it sends large screenshots: every screenshot it sent
is received, or counted as dropped or lost, exactly.

Before: the crash spool (4 MiB) held far less than the send queue (1,000
messages: 400 MB of 400 KB screenshots), so 630-890 events were lost in each of
5 runs, and with the default droppable kinds the last dropped screenshot was
reported nowhere (missing = lost + dropped + 1)."""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
from pathlib import Path

import pytest
from helpers import ENGINES, Watcher, bus, bus_result, finish, is_state, write_config

from bus import Subscriber

RUNS = 5


def status() -> dict:  # type: ignore[type-arg]
    result = bus_result("status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("size", [400_000, 50_000])
def test_a_killed_engine_s_screenshots_are_all_accounted_for(runtime_dir: Path, tmp_path: Path, size: int) -> None:
    counters = tmp_path / "counters"
    engine = {"command": [sys.executable, str(ENGINES / "shots.py"), str(counters), str(size)], "env": {}}  # default droppable, send queue, spool
    config = write_config(tmp_path, {"shots": engine})
    for run in range(RUNS):
        launcher = bus("up", "--plain", "--keep", str(config), stdout=open(tmp_path / f"up{run}.out", "w"))
        try:
            with Subscriber(timeout=30, connect_timeout=60, kinds=["screenshot", "state", "exit"]) as sub:
                watcher = Watcher(sub)
                pid = watcher.wait(is_state("shots", "running")).fields()["pid"]  # type: ignore[union-attr]
                enough = 20 + 15 * run  # a different moment each run
                watcher.wait(lambda e: e.kind == "screenshot" and int(e.fields()["name"][1:-4]) >= enough)  # type: ignore[union-attr]
                os.kill(pid, signal.SIGKILL)
                watcher.wait(lambda e: e.kind == "exit" and e.engine == "shots")
                begun, returned = struct.unpack("<QQ", counters.read_bytes())
                received = sorted({int(e.fields()["name"][1:-4]) for e in watcher.events if e.kind == "screenshot"})  # type: ignore[union-attr]
                shots = next(e for e in status()["engines"] if e["name"] == "shots")
            assert bus_result("down").returncode == 0
            assert finish(launcher) in (0, 1)
        finally:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
        dropped, lost = shots["dropped_kinds"].get("screenshot", 0), shots["lost"]
        accounted = len(received) + dropped + lost
        assert begun - returned <= 1
        # The call in progress at the kill may or may not have got as far as the spool: either count is exact.
        assert accounted in (returned, begun), f"run {run}: {returned}-{begun} sent, {len(received)} received + {dropped} dropped + {lost} lost"
        assert lost == 0, f"run {run}: {lost} screenshots lost although each fits the spool"
        assert len(set(received)) == len(received) and received[-1] <= begun
        print(f"\nrun {run} ({size} B): {returned}/{begun} sent, {len(received)} received, {dropped} dropped, {lost} lost, {shots['recovered']} recovered from the spool")
