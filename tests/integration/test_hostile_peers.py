"""Peers that try to crash or starve the supervisor: hellos under taken names,
many connections, busy control clients. It keeps relaying and answering."""

from __future__ import annotations

from pathlib import Path

import zmq
from helpers import Watcher, bus_result, finish, free_ports, is_state, local_endpoint, running, scripted, write_config

from bus import Subscriber
from bus.control_client import ControlClient
from bus.protocol import EngineHello, Log, encode
from bus.runtime import resolve


def status(ctx: zmq.Context) -> dict:  # type: ignore[type-arg]
    client = ControlClient(ctx, resolve(None), timeout=10)
    try:
        return client.request("status")[0]
    finally:
        client.close()


def push_local(ctx: zmq.Context, *events: object) -> None:
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(local_endpoint("pull"))
    for event in events:
        push.send_multipart(encode(event))  # type: ignore[arg-type]
    push.close()


def test_a_launcher_hello_under_a_supervised_name_is_refused_not_fatal(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    """Seen before the fix: `ValueError: undeclared protocol error reason 'name-taken'`, the supervisor exited 1."""
    config = write_config(tmp_path, {"a": scripted("--events", "1", "--hold")})
    with running("up", "--plain", "--keep", str(config), stdout=open(tmp_path / "up.out", "w"), stderr=open(tmp_path / "up.err", "w")):
        with Subscriber(timeout=10, connect_timeout=60) as sub:
            watcher = Watcher(sub)
            up = watcher.wait(is_state("a", "running"))
            push_local(ctx, EngineHello(engine="a", pid=4242, host="elsewhere", seq=None), Log(engine="a", message="sentinel"))
            watcher.wait(lambda e: e.kind == "log" and e.fields()["message"] == "sentinel")  # type: ignore[union-attr]
            said = status(ctx)
            assert said["rejects"] == {"name-taken": 1}
            assert said["internal_errors"] == 0
            a = next(e for e in said["engines"] if e["name"] == "a")
            assert (a["state"], a["pid"], a["remote"]) == ("running", up.fields()["pid"], False)  # type: ignore[union-attr]

            marker = tmp_path / "ran"
            attached = bus_result("attach", "default", "-n", "a", "--", "sh", "-c", f"touch {marker}")
            assert attached.returncode == 3, attached.stderr
            assert attached.stderr.strip().splitlines() == [f"bus attach: the supervisor at {resolve(None).label} runs an engine named 'a' itself: attach under another name (-n NAME)"]
            assert not marker.exists(), "the command ran although its name was refused"
    assert "Traceback" not in (tmp_path / "up.err").read_text()


def test_pipelined_control_requests_all_get_their_replies_in_order(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    """The protocol lets a client send several requests before reading (`id` matches the replies).
    Before: the ROUTER dropped replies past its per-peer limit of 8 silently (20 sent: 8 answered)."""
    import msgpack

    from bus.protocol.control import encode_request

    config = write_config(tmp_path, {"a": scripted("--events", "1", "--hold")})
    with running("up", "--plain", "--keep", str(config), stdout=open(tmp_path / "up.out", "w")):
        with Subscriber(timeout=10, connect_timeout=60, history=None) as sub:
            sub.wait_ready(timeout=60)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(local_endpoint("ctl"))
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
        assert said["replies"] == {"waiting": 0, "held_bytes": 0, "dropped": 0, "vanished": 0}
        assert said["internal_errors"] == 0


def test_thousands_of_plain_tcp_connections_are_bounded_and_counted(runtime_dir: Path, tmp_path: Path, keys: dict[str, Path], ctx: zmq.Context) -> None:
    """2,000 plain TCP connects (no handshake) to each port of a supervisor with CURVE on and
    a 1,024 open-files limit. Before: engine restarts failed ("cannot start"), then the next
    local connection aborted it (libzmq: Too many open files, src/ipc_listener.cpp)."""
    import resource
    import socket
    import sys

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 7000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 7000), hard))  # this test holds 6,000 connections
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 7000:
        import pytest

        pytest.skip(f"this machine's hard open-files limit ({hard}) is too low for the attacker's 6,000 connections")
    config = write_config(tmp_path, {
        "stream": scripted("--events", "100000", "--pace", "0.5", "--hold"),  # 2 events/ms, until stopped
        "flicker": {"command": ["sh", "-c", "sleep 0.3"], "restart": "always", "backoff": 0.1, "backoff_max": 0.1, "max_restarts": 100000},
    })
    base = free_ports(3)
    command = f"ulimit -n 1024 && exec {sys.executable} -m bus up --plain --listen tcp://127.0.0.1:{base} --keys {keys['dir']} {config}"
    launcher = bus_shell(command, stdout=open(tmp_path / "up.out", "w"), stderr=open(tmp_path / "up.err", "w"))
    flood: list[socket.socket] = []
    try:
        with Subscriber(timeout=10, connect_timeout=60, history=None, kinds=["progress", "state"]) as sub:
            watcher = Watcher(sub)
            watcher.wait(lambda e: e.kind == "progress" and e.engine == "stream")
            before = restarts(ctx)
            for _ in range(2000):
                for port in (base, base + 1, base + 2):
                    conn = socket.socket()
                    conn.setblocking(False)
                    try:
                        conn.connect(("127.0.0.1", port))
                    except BlockingIOError:
                        pass
                    flood.append(conn)
            # Still relaying: fresh progress from the streaming engine, and the restarting one keeps restarting.
            mark = watcher.mark()
            watcher.wait(lambda e: e.kind == "progress" and e.engine == "stream", since=mark)
            # spawned again since `before` (a state event read after the mark may have been published before it: its count says)
            watcher.wait(lambda e: e.kind == "state" and e.engine == "flicker" and e.fields()["state"] == "starting" and e.fields()["restarts"] > before, since=mark)  # type: ignore[union-attr]
            said = status(ctx)  # over ipc, while the TCP ports are full
            report = said["connections"]
            assert report["files"]["limit"] == 1024
            for name in ("pull", "pub", "control"):
                assert report[name]["tcp"] <= report["max_tcp"], report
                assert report[name]["full"] or report[name]["refused"] > 0, report
                assert report[name]["times_full"] >= 1
            assert report["files"]["open"] < 1024 - 100, f"descriptors nearly out: {report['files']}"
            assert said["internal_errors"] == 0
            flicker = next(e for e in said["engines"] if e["name"] == "flicker")
            assert flicker["restarts"] > before and flicker["error"] is None, flicker
            for conn in flood:
                conn.close()
            flood.clear()
        notes = bus_result("tail", "-n", "all", "--no-follow", "-k", "log").stdout
        for name in ("pull", "pub", "control"):
            assert f"the {name} socket holds {report['max_tcp']} TCP connections, its bound (from the open-files limit 1024)" in notes
        assert bus_result("down").returncode == 0
        assert finish(launcher) == 0
    finally:
        for conn in flood:
            conn.close()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    err = (tmp_path / "up.err").read_text()
    assert "Too many open files" not in err and "Traceback" not in err, err


def restarts(ctx: zmq.Context) -> int:
    return next(e["restarts"] for e in status(ctx)["engines"] if e["name"] == "flicker")


def bus_shell(command: str, **kwargs: object):  # type: ignore[no-untyped-def]
    import subprocess

    from helpers import ROOT

    return subprocess.Popen(["sh", "-c", command], cwd=ROOT, text=True, **kwargs)  # type: ignore[call-overload]
