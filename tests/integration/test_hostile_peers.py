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


def test_pipelined_control_requests_all_get_their_replies_in_order(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    """The protocol lets a client send several requests before reading (`id` matches the replies).
    Before: the ROUTER dropped replies past its per-peer limit of 8 silently (20 sent: 8 answered)."""
    import msgpack

    from bus.protocol.control import encode_request

    config = write_config(tmp_path, {"a": scripted("--events", "1", "--hold")})
    launcher = bus("up", "--plain", "--keep", str(config), stdout=open(tmp_path / "up.out", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60, history=None) as sub:
            sub.wait_ready(timeout=60)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(local_session(None).ipc("ctl"))
        others = [ControlClient(ctx, resolve(None), timeout=10) for _ in range(3)]
        for round_ in range(3):
            for i in range(300):
                dealer.send_multipart([b"", encode_request("status" if i % 3 == 0 else "hello", f"{round_}-{i}")])
            for other in others:  # other clients come and go meanwhile
                assert other.request("hello")[0]["ok"]
            ids = []
            while len(ids) < 300:
                assert dealer.poll(10_000), f"round {round_}: {len(ids)} of 300 replies came"
                frames = dealer.recv_multipart()
                reply = msgpack.unpackb(frames[1])
                assert reply["ok"] is True
                ids.append(reply["id"])
            assert ids == [f"{round_}-{i}" for i in range(300)]
        for other in others:
            other.close()
        dealer.close()
        said = status(ctx)
        assert said["replies"] == {"waiting": 0, "dropped": 0, "vanished": 0}
        assert said["internal_errors"] == 0
        assert bus_result("down").returncode == 0
        assert finish(launcher) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
