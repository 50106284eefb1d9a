"""Remote engines: started outside the supervisor, joining it over TCP with an engine key.

Processes stand in for hosts: the supervisor listens on 127.0.0.1 with CURVE
keys, and engines reach it only through that TCP address and their environment.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engines.scripted import kind_of, script
from helpers import ENGINES, Watcher, bus, bus_result, finish, is_state, scripted, write_config

from bus import Subscriber
from bus.runtime import local_session


@pytest.fixture
def supervisor(runtime_dir: Path, tmp_path: Path, keys: dict[str, Path]):  # type: ignore[no-untyped-def]
    """A supervisor listening on TCP with keys, kept for remote engines (its config lists none). Yields its tcp endpoints."""
    config = write_config(tmp_path, {}, remote_timeout=20)
    launcher = bus("up", "--plain", "--keep", "--listen", "tcp://127.0.0.1:0", "--keys", str(keys["dir"]), str(config), stdout=open(tmp_path / "up.out", "w"))
    try:
        with Subscriber(timeout=30, connect_timeout=60) as sub:
            watcher = Watcher(sub)
            watcher.wait(lambda e: e.kind == "sup.start")
            info = json.loads(local_session(None).info_file.read_text())
            tcp = {name: info[name][-1] for name in ("control", "pub", "pull")}  # (--listen's entry is the last; the first is the local one)
            yield tcp, watcher
        assert bus_result("down").returncode == 0
        assert finish(launcher) == 0
    finally:
        if launcher.poll() is None:
            launcher.terminate()
            launcher.wait(30)


def key_args(keys: dict[str, Path], who: str) -> list[str]:
    return ["--server-key", str(keys["server"]), "--key", str(keys[who])]


def status() -> dict:  # type: ignore[type-arg]
    result = bus_result("status", "--json")
    assert result.returncode == 0, result.stderr
    return {e["name"]: e for e in json.loads(result.stdout)["engines"]}


def test_an_attached_engine_streams_in_is_listed_as_remote_and_cannot_be_signalled(supervisor, keys: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    tcp, watcher = supervisor
    attached = bus_result("attach", tcp["control"], "-n", "far", *key_args(keys, "eng"), "--", *scripted("--events", "40", "--seed", "3", "--shots", "2"))
    assert attached.returncode == 0, attached.stderr
    assert attached.stdout.startswith("scripted engine done: ")  # its output is shown where it runs...
    watcher.wait(is_state("far", "exited"))
    far = [e for e in watcher.events if e.engine == "far"]
    exit_ = next(e for e in far if e.kind == "exit")
    # ... and sent along: every SDK event in order, its output line, its exit code.
    sdk = [e for e in far if e.seq is not None]
    assert [e.seq for e in sdk] == list(range(1, len(sdk) + 1))
    assert [e.kind for e in sdk if e.kind != "heartbeat"] == ["hello", *(kind_of(m) for m, _ in script(3, 40, 2)), "bye"]
    assert [e.fields()["message"] + "\n" for e in far if e.kind == "log" and e.fields()["stream"] == "stdout"] == [attached.stdout]
    assert exit_.fields()["code"] == 0 and exit_.fields()["pid"] == sdk[0].fields()["pid"]
    states = [(e.fields()["state"], e.fields()["reason"]) for e in far if e.kind == "state"]
    assert [s for s, _ in states] == ["running", "exited"]
    assert states[0][1].startswith(f"remote: attached from {socket.gethostname()}, pid {exit_.fields()['pid']} (key eng)")
    assert far.index(exit_) > max(far.index(e) for e in sdk)  # the exit comes after its last event

    listed = status()["far"]
    assert (listed["remote"], listed["via"], listed["host"], listed["state"], listed["exit"]["code"]) == (True, "key eng", socket.gethostname(), "exited", 0)
    assert listed["events"] == len(far) - len([e for e in far if e.kind in ("state", "exit")])  # what it (and attach for it) sent
    for verb in ("stop", "restart", "start"):
        refused = bus_result(verb, "far")
        assert refused.returncode == 2 and f"cannot {verb} a remote engine: far: the supervisor cannot signal it" in refused.stderr, refused.stderr
    assert status()["far"]["state"] == "exited"  # and nothing was done to it


def test_without_an_engine_key_an_engine_is_refused(supervisor, keys: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    tcp, _ = supervisor
    for who, said in [(None, "requires CURVE keys"), ("viewer", "refused key 'viewer' for pushing events"), ("stranger", "refused key 'stranger'")]:
        result = bus_result("attach", tcp["control"], "-n", f"by-{who}", *(key_args(keys, who) if who else []), "--timeout", "20", "--", *scripted("--events", "3"))
        assert result.returncode == 5, (who, result.stderr)
        assert said in result.stderr and "Traceback" not in result.stderr and result.stdout == "", who  # refused before the command ran
    assert status() == {}


def test_a_remote_engine_that_crashes_is_reported_lost_within_its_heartbeat_timeout(supervisor, keys: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    """No launcher: the SDK alone, with nothing but the environment (as in a Kubernetes Job)."""
    tcp, watcher = supervisor
    env = {**os.environ, "BUS_ENDPOINT": tcp["pull"], "BUS_ENGINE": "lone", "BUS_SERVER_KEY": str(keys["server"]), "BUS_KEY": str(keys["eng"]), "BUS_HEARTBEAT": "0.3"}
    engine = subprocess.Popen([sys.executable, str(ENGINES / "scripted.py"), "--events", "5", "--hold"], env=env, stdout=subprocess.DEVNULL)
    try:
        watcher.wait(lambda e: e.kind == "result" and e.engine == "lone")
        hello = next(e for e in watcher.events if e.kind == "hello" and e.engine == "lone")
        assert hello.fields()["heartbeat"] == 0.3 and hello.fields()["pid"] == engine.pid
        assert status()["lone"]["state"] == "running"
        mark = watcher.mark()
        engine.send_signal(signal.SIGKILL)
        killed = time.time()
        lost = watcher.wait(is_state("lone", "lost"), since=mark, timeout=30)
    finally:
        engine.kill()
        engine.wait()
    assert "heartbeat timeout 0.9s" in lost.fields()["reason"]
    assert lost.ts - killed < 0.9 + 0.5  # the timeout, plus at most one heartbeat interval of slack... and no more
    assert status()["lone"]["state"] == "lost"


def test_an_attached_engine_that_dies_is_reported_at_once_with_how_it_ended(supervisor, keys: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    tcp, watcher = supervisor
    result = bus_result("attach", tcp["control"], "-n", "crashy", *key_args(keys, "eng"), "--", *scripted("--events", "200", "--pace", "1", "--kill-self-after", "150"))
    assert result.returncode == 128 + signal.SIGKILL, result.stderr
    exit_ = watcher.wait(lambda e: e.kind == "exit" and e.engine == "crashy")
    assert exit_.fields()["signame"] == "SIGKILL"
    notes = [e.fields()["message"] for e in watcher.events if e.engine == "crashy" and e.kind == "log" and e.fields()["stream"] == "bus"]
    assert any("ended without its final bye" in note for note in notes), notes
