"""Engines added to a running supervisor: `bus spawn` and `bus forget`, over TCP with keys."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers import bus, bus_result, scripted

from bus import Subscriber
from bus.runtime import local_session


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    return lines[0]


def test_an_admin_key_spawns_into_a_kept_supervisor_and_the_engine_is_like_any_other(runtime_dir: Path, keys: dict[str, Path]) -> None:
    launcher = bus("up", "--keep", "--plain", "--listen", "tcp://127.0.0.1:0", "--keys", str(keys["dir"]), stdout=subprocess.DEVNULL)
    try:
        with Subscriber(timeout=30, connect_timeout=60, history=None) as local:
            local.wait_ready(timeout=60)  # (ipc: no key needed)
        info = json.loads(local_session(None).info_file.read_text())
        control = info["control"][-1]
        admin = ["--server-key", str(keys["server"]), "--key", str(keys["ops"])]
        viewer = ["--server-key", str(keys["server"]), "--key", str(keys["viewer"])]
        worker = scripted("--seed", "3", "--events", "20", "--hold")

        refused = bus_result("spawn", *viewer, control, "-n", "worker", "--", *worker)
        assert refused.returncode == 5 and refused.stdout == ""
        assert "key 'viewer' may only read (it is not an admin key): spawn needs an admin key" in one_line(refused.stderr)

        spawned = bus_result("spawn", *admin, control, "-n", "worker", "--restart", "on-failure", "--", *worker)
        assert spawned.returncode == 0, spawned.stderr
        assert spawned.stdout.startswith("worker: starting (pid ")

        taken = bus_result("spawn", *admin, control, "-n", "worker", "--", *worker)
        assert taken.returncode == 3
        assert one_line(taken.stderr) == "bus spawn: engine name 'worker' is taken: pick another name, or forget the ended one (bus forget worker); nothing was started"
        missing = bus_result("spawn", *admin, control, "-n", "ghost", "--", "no-such-program-here", "--flag")
        assert missing.returncode == 3
        assert one_line(missing.stderr) == "bus spawn: engine 'ghost': command 'no-such-program-here' not found (not on PATH); nothing was started"
        bad = bus_result("spawn", *admin, control, "-n", "odd", "--stop-signal", "SIGNOPE", "--", *worker)
        assert bad.returncode == 3 and "engine 'odd': stop_signal" in one_line(bad.stderr)

        with Subscriber(timeout=30, connect_timeout=60, kinds=["result", "log"]) as sub:  # its whole run, from history
            seen = {"result": False, "done": False}
            while not all(seen.values()):
                event = sub.recv(timeout=60)
                assert event is not None and event.engine == "worker"
                seen["result"] |= event.kind == "result"
                seen["done"] |= event.kind == "log" and event.fields()["message"].startswith("scripted engine done")
        tail = bus_result("tail", "--json", "--no-follow", "-k", "result", *viewer, control)
        assert tail.returncode == 0, tail.stderr
        results = [json.loads(line) for line in tail.stdout.splitlines()]
        assert [(r["engine"], r["summary"]) for r in results] == [("worker", {"events": 20, "shots": 0, "seed": 3})]

        def engines() -> dict[str, dict[str, object]]:
            status = bus_result("status", "--json", *viewer, control)
            assert status.returncode == 0, status.stderr
            return {e["name"]: e for e in json.loads(status.stdout)["engines"]}

        assert engines()["worker"]["state"] == "running" and set(engines()) == {"worker"}, "nothing of the refused spawns is left"
        restarted = bus_result("restart", "worker", *admin, control)
        assert restarted.returncode == 0, restarted.stderr
        assert engines()["worker"]["spawns"] == 2
        not_ended = bus_result("forget", "worker", *admin, control)
        assert not_ended.returncode == 2 and "has not ended: stop it first" in one_line(not_ended.stderr)
        stopped = bus_result("stop", "worker", *admin, control)
        assert stopped.returncode == 0, stopped.stderr
        assert engines()["worker"]["state"] == "exited"
        forgotten = bus_result("forget", "worker", *admin, control)
        assert forgotten.returncode == 0 and forgotten.stdout == "worker: forgotten\n", forgotten.stderr
        assert engines() == {}
        again = bus_result("spawn", *admin, control, "-n", "worker", "-c", "2", "--", *worker)
        assert again.returncode == 0 and again.stdout.count(": starting (pid ") == 2, again.stderr
        assert set(engines()) == {"worker.1", "worker.2"}
    finally:
        down = bus_result("down", timeout=60)
        launcher.wait(60)
    assert down.returncode == 0, down.stderr
    assert launcher.returncode == 0


def test_up_without_a_config_needs_keep(runtime_dir: Path) -> None:
    result = bus_result("up")
    assert result.returncode == 2
    assert one_line(result.stderr) == "bus up: missing CONFIG.toml: name the engines' config file (or give --keep to start with none and add them with bus spawn)"


def test_spawn_without_the_double_dash_is_a_usage_error(runtime_dir: Path) -> None:
    result = bus_result("spawn", "-n", "x", "python3", "worker.py")
    assert result.returncode == 2
    assert one_line(result.stderr) == "bus spawn: give the command after --: bus spawn [ADDRESS] [options] -- CMD ARGS..."


def test_without_keys_spawn_over_tcp_is_refused_and_a_hub_refuses_it(runtime_dir: Path, tmp_path: Path) -> None:
    """A port without keys is reachable by every local user: it may stop engines, never run a command."""
    launcher = bus("up", "--keep", "--plain", "--listen", "tcp://127.0.0.1:0", stdout=subprocess.DEVNULL)
    try:
        with Subscriber(timeout=30, connect_timeout=60, history=None) as local:
            local.wait_ready(timeout=60)
        info = json.loads(local_session(None).info_file.read_text())
        control = info["control"][-1]
        refused = bus_result("spawn", control, "-n", "w", "--", *scripted("--events", "1"))
        assert refused.returncode == 5
        assert "spawn over TCP needs CURVE keys and an admin key" in one_line(refused.stderr)
        assert bus_result("status", "--json", control).returncode == 0  # (reading still works)
        local_spawn = bus_result("spawn", "-n", "w", "--", *scripted("--events", "1"))  # the owner, over ipc
        assert local_spawn.returncode == 0, local_spawn.stderr
        hub = bus("hub", "--session", "hubbed", f"one={control}", stdout=subprocess.DEVNULL)
        try:
            with Subscriber(address="hubbed", timeout=30, connect_timeout=60, history=None) as viewer:
                viewer.wait_ready(timeout=60)
            into_hub = bus_result("spawn", "hubbed", "-n", "h", "--", *scripted("--events", "1"))
            assert into_hub.returncode == 2 and "a hub runs no engines of its own" in one_line(into_hub.stderr)
        finally:
            bus_result("down", "hubbed", timeout=60)
            hub.wait(60)
    finally:
        down = bus_result("down", timeout=60)
        launcher.wait(60)
    assert down.returncode == 0, down.stderr
