"""Batches (docs/PROTOCOL.md section 3): several events in one message from an engine,
published one by one; the SDK batches a burst and sends an idle engine's event alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import zmq
from helpers import ENGINES, Collector, bus, bus_result, scripted, write_config

from bus.control_client import ControlClient
from bus.protocol.codec import batch_headers, decode, is_batch
from bus.runtime import resolve


def test_a_batch_is_published_event_by_event_in_order_and_a_bad_element_alone_is_rejected(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    config = write_config(tmp_path, {"batcher": [sys.executable, str(ENGINES / "handmade_batch.py")], "holder": scripted("--events", "1", "--hold")})
    watcher = Collector(lambda e: e.kind == "exit" and e.engine == "batcher")
    watcher.start()
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    try:
        assert watcher.reached.wait(60)
        client = ControlClient(ctx, resolve(None), timeout=10)
        status, _ = client.request("status")
        client.close()
    finally:
        assert bus_result("down", timeout=60).returncode == 0
        launcher.wait(30)
    events = [e for e in watcher.finish() if e.engine == "batcher"]
    sent = [e for e in events if e.seq is not None]
    assert [(e.seq, e.kind) for e in sent] == [
        (1, "hello"), (2, "phase.start"), (3, "progress"), (4, "log"), (5, "progress"), (6, "finding"),
        (7, "screenshot"), (8, "phase.done"), (9, "result"), (10, "bye"),
    ]
    assert [e.gseq for e in sent] == sorted(e.gseq for e in sent)
    assert sent[3].fields()["message"] == "from a batch" and sent[3].fields()["level"] == "warning"
    assert sent[5].fields()["data"] == {"n": 1, "raw": b"\x00\x01"}
    assert bytes(sent[6].fields()["data"]) == b"\x89PNG!"
    assert status["rejects"] == {"not-a-map": 1}
    assert status["counters"]["received"] >= 11  # each event of a batch counts, the rejected one too
    notes = [e.fields()["message"] for e in events if e.kind == "log" and e.fields()["stream"] == "bus"]
    assert notes == [], "its bye said 9 sent and all 9 arrived"


BURST = textwrap.dedent(
    """
    import sys
    from bus.engine import Engine
    with Engine("burst", heartbeat=0, droppable=[]) as eng:
        sys.stdin.readline()          # the test reads hello first
        eng.progress(done=0, detail="alone")
        sys.stdin.readline()          # ... and that one
        for i in range(1, 5001):
            eng.progress(done=i, total=5000)
    """
)


def test_the_sdk_sends_an_idle_engines_event_alone_and_a_burst_in_batches(tmp_path: Path) -> None:
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/pull"
    sock.bind(endpoint)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUS_")}
    engine = subprocess.Popen([sys.executable, "-c", BURST], env={**env, "BUS_ENDPOINT": endpoint}, stdin=subprocess.PIPE, text=True)
    assert engine.stdin is not None
    try:
        def message() -> list[bytes]:
            assert sock.poll(30_000), "nothing came"
            return sock.recv_multipart()

        first = message()
        assert not is_batch(first[0]) and decode(first).kind == "hello"
        engine.stdin.write("go\n")
        engine.stdin.flush()
        alone = message()
        assert not is_batch(alone[0]), "an idle engine's event goes out alone, at once"
        assert decode(alone).fields()["detail"] == "alone"
        engine.stdin.write("go\n")
        engine.stdin.flush()
        seqs: list[int] = []
        messages = batches = 0
        while True:
            frames = message()
            messages += 1
            headers = [frames[0]]
            if is_batch(frames[0]):
                batches += 1
                headers = batch_headers(frames[0])
            events = [decode([h]) for h in headers]
            seqs += [e.seq for e in events if e.kind == "progress"]  # type: ignore[misc]
            if events[-1].kind == "bye":
                break
        assert seqs == list(range(3, 5003)), "every event of the burst, in order"
        assert batches >= 1 and messages <= 5001 // 10, f"{messages} messages for 5,000 events"
        assert engine.wait(30) == 0
    finally:
        engine.kill()
        engine.wait()
        sock.close()
