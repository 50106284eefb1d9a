"""Peers that try to crash or starve the supervisor: hellos under taken names,
many connections, busy control clients. It keeps relaying and answering."""

from __future__ import annotations

import json
from pathlib import Path

import zmq
from helpers import Watcher, bus, bus_result, finish, is_state, scripted, write_config

from bus import Subscriber
from bus.control_client import ControlClient
from bus.protocol import EngineHello, Log, encode
from bus.runtime import local_session, resolve


def status(ctx: zmq.Context) -> dict:  # type: ignore[type-arg]
    client = ControlClient(ctx, resolve(None), timeout=10)
    try:
        return client.request("status")[0]
    finally:
        client.close()


def push_local(ctx: zmq.Context, *events: object) -> None:
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(local_session(None).ipc("pull"))
    for event in events:
        push.send_multipart(encode(event))  # type: ignore[arg-type]
    push.close()


def test_a_launcher_hello_under_a_supervised_name_is_refused_not_fatal(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    """Seen before the fix: `ValueError: undeclared protocol error reason 'name-taken'`, the supervisor exited 1."""
    config = write_config(tmp_path, {"a": scripted("--events", "1", "--hold")})
    launcher = bus("up", "--plain", "--keep", str(config), stdout=open(tmp_path / "up.out", "w"), stderr=open(tmp_path / "up.err", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60) as sub:
            watcher = Watcher(sub)
            running = watcher.wait(is_state("a", "running"))
            push_local(ctx, EngineHello(engine="a", pid=4242, host="elsewhere", seq=None), Log(engine="a", message="sentinel"))
            watcher.wait(lambda e: e.kind == "log" and e.fields()["message"] == "sentinel")  # type: ignore[union-attr]
            said = status(ctx)
            assert said["rejects"] == {"name-taken": 1}
            assert said["internal_errors"] == 0
            a = next(e for e in said["engines"] if e["name"] == "a")
            assert (a["state"], a["pid"], a["remote"]) == ("running", running.fields()["pid"], False)  # type: ignore[union-attr]

            marker = tmp_path / "ran"
            attached = bus_result("attach", "default", "-n", "a", "--", "sh", "-c", f"touch {marker}")
            assert attached.returncode == 3, attached.stderr
            assert attached.stderr.strip().splitlines() == [f"bus attach: the supervisor at {resolve(None).label} runs an engine named 'a' itself: attach under another name (-n NAME)"]
            assert not marker.exists(), "the command ran although its name was refused"
        assert bus_result("down").returncode == 0
        assert finish(launcher) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert "Traceback" not in (tmp_path / "up.err").read_text()
