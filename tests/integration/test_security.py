"""CurveZMQ on the TCP endpoints: only admitted keys get in, each to what its role allows.

Keys are made with the real `bus keygen`; the supervisor runs with `--keys DIR`
(DIR/server.key_secret, DIR/engines/, DIR/subscribers/, DIR/admins/). Refusals
are observed, not waited for: each client socket has a monitor, and a test waits
for its handshake to fail before it checks that nothing got through.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import zmq
from helpers import ENGINES, bus, bus_result, running, scripted, write_config

from bus import Bus, Replay, Subscriber
from bus.keys import HANDSHAKE_FAILED, ClientKeys, load_public, load_secret, monitor_events
from bus.protocol import Log, decode_published, encode
from bus.runtime import local_session


def client_keys(keys: dict[str, Path], who: str, server: Path | None = None) -> ClientKeys:
    public, secret = load_secret(keys[who])
    return ClientKeys(load_public(server or keys["server"]), public, secret, who)


class Client:
    """A raw zmq client with a monitor attached before it connects."""

    def __init__(self, ctx: zmq.Context, kind: int, endpoint: str, keys: ClientKeys | None) -> None:
        self.sock = ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        if kind == zmq.SUB:
            self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        if keys is not None:
            keys.apply(self.sock)
        self.monitor = self.sock.get_monitor_socket(HANDSHAKE_FAILED)
        self.sock.connect(endpoint)

    def refused(self, timeout_ms: int = 30_000) -> int:
        """Wait until the handshake has failed; return the monitor's event."""
        assert self.monitor.poll(timeout_ms), "the handshake neither failed nor was allowed to"
        return monitor_events(self.monitor)[0]

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


def cli(keys: dict[str, Path], who: str | None, *args: str) -> list[str]:
    given = ["--server-key", str(keys["server"]), "--key", str(keys[who])] if who else []
    return [*args, *given]


def test_only_admitted_keys_get_in_and_only_admins_control(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context, keys: dict[str, Path]) -> None:
    config = write_config(tmp_path, {"idle": scripted("--events", "3", "--hold")})
    launcher = bus("up", "--plain", "--keep", "--listen", "tcp://127.0.0.1:0", "--keys", str(keys["dir"]), str(config), stdout=open(tmp_path / "up.out", "w"))
    try:
        with Subscriber(timeout=30, connect_timeout=60, kinds=["log"]) as local:
            local.wait_ready(timeout=60)  # ipc needs no key: it is the owner's own directory
            while not local.recv(timeout=60).fields()["message"].startswith("scripted engine done"):
                pass  # its last line: from now on it holds, publishing nothing
            info = json.loads(local_session(None).info_file.read_text())
            tcp = {name: info[name][-1] for name in ("control", "pub", "pull")}

            # Control: who may ask what.
            for who, code, said in [
                (None, 5, "requires CURVE keys"),
                ("stranger", 5, "refused key 'stranger'"),
                ("eng", 5, "key 'eng' is an engine key: it may push events and ask hello and take, nothing else"),  # (bus attach asks hello)
            ]:
                result = bus_result(*cli(keys, who, "status", "--timeout", "30", tcp["control"]))
                assert (result.returncode, result.stdout) == (code, ""), result.stderr
                assert said in result.stderr and "Traceback" not in result.stderr
            wrong_server = bus_result("status", "--timeout", "3", "--server-key", str(keys["stranger"]), "--key", str(keys["viewer"]), tcp["control"])
            assert wrong_server.returncode == 5 and "is the server key you gave that supervisor's public key?" in wrong_server.stderr

            viewer_status = bus_result(*cli(keys, "viewer", "status", "--json", tcp["control"]))
            assert viewer_status.returncode == 0, viewer_status.stderr
            assert [e["name"] for e in json.loads(viewer_status.stdout)["engines"]] == ["idle"]
            tail = bus_result(*cli(keys, "viewer", "tail", "--json", "--no-follow", "-k", "log", tcp["control"]))
            assert tail.returncode == 0, tail.stderr
            assert "scripted engine done" in tail.stdout  # bus tail reads PUB and history with a subscriber key
            viewer_stop = bus_result(*cli(keys, "viewer", "stop", "idle", tcp["control"]))
            assert viewer_stop.returncode == 5
            assert "key 'viewer' may only read (it is not an admin key): stop needs an admin key" in viewer_stop.stderr

            # PUB: only subscriber and admin keys receive; PULL: only engine keys push.
            bad_subs = {who: Client(ctx, zmq.SUB, tcp["pub"], None if who is None else client_keys(keys, who)) for who in (None, "stranger", "eng")}
            bad_pushes = {who: Client(ctx, zmq.PUSH, tcp["pull"], None if who is None else client_keys(keys, who)) for who in (None, "stranger", "viewer", "ops")}
            for who, client in bad_pushes.items():
                client.sock.send_multipart(encode(Log(engine="idle", message=f"forged by {who}")), zmq.NOBLOCK)
            failures = [client.refused() for client in [*bad_subs.values(), *bad_pushes.values()]]
            assert failures[1] == failures[4] == zmq.EVENT_HANDSHAKE_FAILED_AUTH  # the stranger's key, refused by ZAP

            good_sub = Client(ctx, zmq.SUB, tcp["pub"], client_keys(keys, "viewer"))
            assert good_sub.sock.poll(30_000), "a subscriber key gets its welcome"
            good_push = Client(ctx, zmq.PUSH, tcp["pull"], client_keys(keys, "eng"))
            good_push.sock.send_multipart(encode(Log(engine="idle", message="genuine")))
            seen = []
            while not seen or seen[-1] != "genuine":
                seen.append(local.recv(timeout=30).fields()["message"])
            received = []
            while not received or received[-1] != "genuine":
                assert good_sub.sock.poll(30_000), "the subscriber key receives what is published"
                event = decode_published(good_sub.sock.recv_multipart())
                if event.kind == "log":
                    received.append(event.fields()["message"])
            for who, client in bad_subs.items():
                assert client.sock.poll(0) == 0, f"a subscriber with key {who} got something"

            # An admin key may use the control verbs.
            ops_stop = bus_result(*cli(keys, "ops", "stop", "idle", tcp["control"]))
            assert ops_stop.returncode == 0, ops_stop.stderr
            asked = bus_result(*cli(keys, "ops", "status", "--json", tcp["control"]))
            assert asked.returncode == 0, asked.stderr
            status = json.loads(asked.stdout)
            assert status["engines"][0]["state"] == "exited"
            security = status["security"]
            assert security["curve"] is True and security["clients"] == {"engines": ["eng"], "subscribers": ["viewer"], "admins": ["ops"], "producers": ["feeder"]}
            assert security["refused"]["bus-control"] >= 1 and security["refused"]["bus-pull"] >= 3 and security["refused"]["bus-pub"] >= 2
            assert {r["name"] for r in security["last_refused"]} >= {None, "eng"}
            assert all(security["handshakes_failed"].get(s, 0) >= 1 for s in ("control", "pub", "pull"))
            for client in [*bad_subs.values(), *bad_pushes.values(), good_sub, good_push]:
                client.close()
        down = bus_result(*cli(keys, "ops", "down", tcp["control"]))
        assert down.returncode == 0, down.stderr
        assert launcher.wait(30) == 0
        messages = [e.fields()["message"] for e in Replay(run="last") if e.kind == "log"]
        assert "genuine" in messages and not [m for m in messages if m.startswith("forged")]
    finally:
        if launcher.poll() is None:
            launcher.terminate()
            launcher.wait(30)


def test_listening_beyond_loopback_needs_keys_or_insecure(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"quick": scripted("--events", "2")})
    refused_run = bus_result("up", "--plain", "--listen", "tcp://0.0.0.0:0", str(config))
    assert refused_run.returncode == 3
    line = refused_run.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("bus up: listen tcp://0.0.0.0:0: 0.0.0.0 is not a loopback address") and "--insecure" in line

    insecure = bus_result("up", "--plain", "--insecure", "--listen", "tcp://0.0.0.0:0", str(config))
    assert insecure.returncode == 0, insecure.stderr
    assert "INSECURE: listening on tcp://0.0.0.0:0 without keys" in insecure.stdout

    loopback = bus_result("up", "--plain", "--listen", "tcp://127.0.0.1:0", str(config))
    assert loopback.returncode == 0 and "INSECURE" not in loopback.stdout


def test_key_files_are_owner_only_and_a_readable_secret_is_refused(runtime_dir: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    assert stat.S_IMODE(keys["dir"].stat().st_mode) == 0o700
    assert stat.S_IMODE((keys["dir"] / "server.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys["server"].stat().st_mode) == 0o644  # the public half is for handing out
    (keys["dir"] / "server.key_secret").chmod(0o644)
    config = write_config(tmp_path, {"quick": scripted("--events", "1")})
    result = bus_result("up", "--listen", "tcp://127.0.0.1:0", "--keys", str(keys["dir"]), str(config))
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"bus up: --keys {keys['dir']}: server_key {keys['dir'] / 'server.key_secret'} can be read by others (mode 644): "
        f"chmod 600 {keys['dir'] / 'server.key_secret'}"
    )
    again = bus_result("keygen", "server", "--dir", str(keys["dir"]))
    assert again.returncode == 3 and "already exists" in again.stderr


def test_a_producer_key_may_submit_and_read_jobs_and_nothing_else(runtime_dir: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    """Issue 20: the producers role (docs/SECURITY.md): work in, and what became of it; no control, no events."""
    config = write_config(tmp_path, {"w": {"command": [sys.executable, str(ENGINES / "worker.py")], "instances": 1, "queue": "q"}})
    with running("up", "--plain", "--listen", "tcp://127.0.0.1:0", "--keys", str(keys["dir"]), str(config), stdout=open(tmp_path / "up.out", "w")):
        with Bus(timeout=60) as local:
            local.status()  # (up: its supervisor.json is written)
            info = json.loads(local_session(None).info_file.read_text())
            control = info["control"][-1]
            submitted = bus_result(*cli(keys, "feeder", "submit", "--json", "--timeout", "30", control, "q", '{"n": 7}'))
            assert submitted.returncode == 0, submitted.stderr
            [job_id] = json.loads(submitted.stdout)
            assert local.result(job_id, timeout=60)["n"] == 7  # taken and run by the pool
            listed = bus_result(*cli(keys, "feeder", "jobs", "q", control, "--json"))
            assert listed.returncode == 0, listed.stderr
            assert [(j["id"], j["state"]) for j in map(json.loads, listed.stdout.splitlines())] == [(job_id, "done")]  # (JSON lines)
            for args, said in [
                (("stop", "w", control), "refused key 'feeder'"),  # (bus stop also follows the events: the pub socket admits no producer key)
                (("status", control), "key 'feeder'"),
                (("retry", job_id, "-a", control), "key 'feeder'"),
            ]:
                refused = bus_result(*cli(keys, "feeder", *args))
                assert refused.returncode == 5, (args, refused.stdout, refused.stderr)
                assert said in refused.stderr and "Traceback" not in refused.stderr
            viewer = bus_result(*cli(keys, "viewer", "submit", control, "q", '{"n": 8}'))
            assert viewer.returncode == 5 and "key 'viewer' may not submit: that needs a producer or admin key" in viewer.stderr, viewer.stderr
            assert local.status()["queues"]["q"]["done"] == 1  # nothing more was queued
