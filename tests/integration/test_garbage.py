"""Malformed frames poured into the supervisor's PULL socket while a real engine
streams: the supervisor keeps running, the engine's events all arrive, and
every reject is counted under its reason."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from pathlib import Path

import msgpack
import zmq
from helpers import ENGINES, bus, bus_result, local_endpoint, scripted, supervisor_memory, write_config

from bus import Subscriber
from bus.control_client import ControlClient
from bus.protocol import Log, encode
from bus.runtime import HAS_IPC, resolve

sys.path.insert(0, str(ENGINES))
from scripted import script  # noqa: E402


def packed(**fields: object) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def garbage() -> list[tuple[list[bytes], str]]:
    """(frames, the reason the supervisor should count) for each kind of garbage."""
    log = {"v": 1, "kind": "log", "engine": "streamer", "seq": 1, "ts": 1.0, "message": "m"}
    cases = [
        ([b"\x00\x01garbage bytes\xff"], "bad-msgpack"),
        ([b""], "bad-msgpack"),
        ([b"\xc1"], "bad-msgpack"),
        ([packed(**log)[:-2]], "bad-msgpack"),
        ([msgpack.packb("a string")], "not-a-map"),
        ([msgpack.packb([1])], "bad-batch"),  # (an array is a batch: 2 to 1,024 events)
        ([b"\xdc\x04\x01" + b"\xc0" * 1025], "bad-batch"),
        ([b"\x92" + packed(**log)], "bad-msgpack"),  # a batch cut short
        ([msgpack.packb([1, 2]), b"frame"], "bad-frames"),  # a batch is one frame
        ([packed(**{**log, "message": 42})], "bad-field"),
        ([packed(**{**log, "seq": "one"})], "bad-field"),
        ([packed(**{**log, "ts": "noon"})], "bad-field"),
        ([packed(**{**log, "kind": "telepathy"})], "unknown-kind"),
        ([packed(**{**log, "kind": "exit", "pid": 1, "code": 0})], "reserved-kind"),
        ([packed(**{**log, "v": 99})], "newer-version"),
        ([packed(**{**log, "engine": "intruder"})], "unknown-engine"),
        ([packed(**{k: v for k, v in log.items() if k != "message"})], "missing-field"),
        ([packed(v=1, kind="screenshot", engine="streamer", name="x.png", size=3)], "bad-frames"),
        ([packed(v=1, kind="screenshot", engine="streamer", name="x.png", size=9), b"abc"], "bad-field"),
        ([b"\x82\xa1v\x01\xa4kind\xa3\xff\xfe\xfd"], "bad-utf8"),
        ([b"\x81" + b"\xa1x" + b"\xc6" + (2 * 1024 * 1024).to_bytes(4, "big") + b"\0" * (2 * 1024 * 1024)], "too-large"),
    ]
    return cases * 150  # 3,150 messages


def test_garbage_is_counted_and_dropped_while_a_real_engine_streams(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    config = write_config(tmp_path, {"streamer": scripted("--seed", "9", "--events", "3000", "--shots", "6", "--pace", "1.5", "--hold")})
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "launcher.out", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60) as sub:
            sub.wait_ready(timeout=60)
            cases = garbage()
            sender = threading.Thread(target=pour, args=(ctx, cases))
            sender.start()
            events = []
            sentinel_seen = bye_seen = False
            while not (sentinel_seen and bye_seen):
                event = sub.recv(timeout=30)
                assert event is not None
                events.append(event)
                sentinel_seen |= event.kind == "log" and event.fields()["message"] == "sentinel"
                bye_seen |= event.kind == "result" and event.engine == "streamer"
            sender.join(30)

            client = ControlClient(ctx, resolve(None), timeout=10)
            status, _ = client.request("status")
            client.close()
        expected = Counter(reason for _, reason in cases)
        assert status["rejects"] == dict(expected)
        assert status["counters"]["rejected"] == len(cases)
        streamer = next(e for e in status["engines"] if e["name"] == "streamer")
        assert streamer["state"] == "running"

        steps = script(9, 3000, 6)
        pushed = [e for e in events if e.engine == "streamer" and e.seq is not None]
        assert [e.seq for e in pushed] == list(range(1, len(steps) + 2))  # hello + every step, none lost
        shots = [bytes(e.fields()["data"]) for e in pushed if e.kind == "screenshot"]
        assert shots == [kw["data"] for method, kw in steps if method == "screenshot"]
        assert [e.gseq for e in events] == list(range(events[0].gseq, events[0].gseq + len(events)))
    finally:
        assert bus_result("down", timeout=60).returncode == 0
        launcher.wait(30)
    assert launcher.returncode == 0


def pour(ctx: zmq.Context, cases: list[tuple[list[bytes], str]]) -> None:
    """Send the garbage on one connection, then a valid sentinel: when the
    sentinel comes out, the supervisor has read everything before it."""
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(local_endpoint("pull"))
    for frames, _ in cases:
        push.send_multipart(frames)
    push.send_multipart(encode(Log(engine="streamer", message="sentinel")))
    push.close()


def test_bad_control_requests_get_error_replies(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    config = write_config(tmp_path, {"idle": scripted("--events", "1", "--hold")})
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "launcher.out", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60, history=None) as sub:
            sub.wait_ready(timeout=60)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(local_endpoint("ctl"))
        requests = [  # (what is sent, the code and the id of the error reply: the request's id whenever it could be read)
            ([b"", b"\xc1 not msgpack"], "bad-msgpack", None),
            ([b"", packed(op="reboot", id=1)], "unknown-op", 1),
            ([b"", packed(op="history", after="yesterday", id=2)], "bad-request", 2),
            ([b"", packed(op="take", id="three")], "bad-request", "three"),
            ([b"", packed(op=7, id=4)], "bad-request", 4),
            ([b"", packed(op="status"), b"extra frame"], "bad-request", None),
        ]
        for request, code, req_id in requests:
            dealer.send_multipart(request)
            assert dealer.poll(10_000), "no reply to a bad request"
            reply = msgpack.unpackb(dealer.recv_multipart()[1])
            assert reply["ok"] is False and reply["error"] and (reply["code"], reply["id"]) == (code, req_id), reply
        dealer.send_multipart([b"", packed(op="hello", id=9)])
        assert dealer.poll(10_000)
        hello = msgpack.unpackb(dealer.recv_multipart()[1])
        assert hello["ok"] is True and hello["id"] == 9  # still serving
        dealer.close()
    finally:
        assert bus_result("down", timeout=60).returncode == 0
        launcher.wait(30)


FLOOD = 100_000


def test_a_flood_of_100k_garbage_messages_cannot_starve_a_real_engine(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    """The flood goes on until the real engine's result has arrived, so the engine
    streamed its whole script while garbage poured in; nothing of it may be lost."""
    engine = {"command": scripted("--seed", "5", "--events", "20000", "--shots", "4", "--pace", "2", "--hold"), "droppable": []}
    config = write_config(tmp_path, {"streamer": engine})
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "launcher.out", "w"))
    small = [(frames, reason) for frames, reason in garbage()[:17] if reason != "too-large"]
    small.append(([packed(v=1, kind="log", engine="streamer", message="m"), *[b"x"] * 20], "bad-frames"))  # too many frames
    sent: Counter[str] = Counter()
    engine_done = threading.Event()
    sentinel_in = threading.Event()
    flood_failed: list[BaseException] = []

    def flood() -> None:
        try:
            push = ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 5000)
            push.connect(local_endpoint("pull"))
            n = 0
            while n < FLOOD or not engine_done.is_set():
                frames, reason = small[n % len(small)]
                push.send_multipart(frames)
                sent[reason] += 1
                n += 1
            push.send_multipart(encode(Log(engine="streamer", message="sentinel")))  # after all of it, on the same connection
            # Closed only once the sentinel is in: libzmq 4.3.5 drops what a PUSH still holds when it is
            # closed while the receiver's queue is full, linger or not (zeromq/libzmq#4660; PROTOCOL.md).
            sentinel_in.wait(120)
            push.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            flood_failed.append(exc)

    try:
        with Subscriber(timeout=30, connect_timeout=60) as sub:
            sub.wait_ready(timeout=60)
            flooder = threading.Thread(target=flood)
            flooder.start()
            events = []
            while True:
                event = sub.recv(timeout=60)
                assert event is not None
                events.append(event)
                if event.kind == "result" and event.engine == "streamer":
                    sent_then = sum(sent.values())
                    engine_done.set()
                if event.kind == "log" and event.fields()["message"] == "sentinel":
                    sentinel_in.set()
                    break
            flooder.join(60)
            assert not flood_failed, flood_failed
            client = ControlClient(ctx, resolve(None), timeout=10)
            status, _ = client.request("status")
            client.close()
    finally:
        engine_done.set()
        sentinel_in.set()
        assert bus_result("down", timeout=60).returncode == 0
        launcher.wait(30)
    assert launcher.returncode == 0
    total = sum(sent.values())
    assert total >= FLOOD and sent_then > 0
    assert status["counters"]["rejected"] == total
    assert status["rejects"] == dict(sent)
    assert status["reject_sources"] == {"local" if HAS_IPC else "tcp 127.0.0.1": dict(sent)}  # (without ipc a local peer is a loopback TCP one)
    steps = script(5, 20000, 4)
    pushed = [e for e in events if e.engine == "streamer" and e.seq is not None]
    assert [e.seq for e in pushed] == list(range(1, len(steps) + 2))  # hello + every step: none lost, none dropped
    assert [bytes(e.fields()["data"]) for e in pushed if e.kind == "screenshot"] == [kw["data"] for m, kw in steps if m == "screenshot"]
    assert [e.gseq for e in events] == list(range(events[0].gseq, events[0].gseq + len(events)))
    print(f"\ngarbage flood: {total} rejected ({sent_then} sent before the engine's result), {len(pushed)} engine events, none lost")


def test_a_frame_over_the_size_limit_drops_its_sender_not_the_supervisor(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    config = write_config(tmp_path, {"idle": scripted("--events", "1", "--hold")})
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "launcher.out", "w"))
    try:
        with Subscriber(timeout=30, connect_timeout=60, kinds=["log"], history=None) as sub:
            sub.wait_ready(timeout=60)
            big = ctx.socket(zmq.PUSH)
            big.setsockopt(zmq.LINGER, 0)
            monitor = big.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            big.connect(local_endpoint("pull"))
            big.send_multipart([b"\x81", b"x" * (80 * 1024 * 1024)])  # one 80 MB frame: beyond ZMQ_MAXMSGSIZE
            assert monitor.poll(30_000), "the supervisor did not drop a peer sending an oversized frame"
            big.disable_monitor()
            big.close(linger=0)
            monitor.close(linger=0)
            ok = ctx.socket(zmq.PUSH)
            ok.setsockopt(zmq.LINGER, 5000)
            ok.connect(local_endpoint("pull"))
            ok.send_multipart(encode(Log(engine="idle", message="still here")))
            ok.close()
            while (event := sub.recv(timeout=30)).fields()["message"] != "still here":
                pass
            client = ControlClient(ctx, resolve(None), timeout=10)
            status, _ = client.request("status")
            client.close()
        assert status["rejects"] == {} and status["counters"]["rejected"] == 0  # dropped by libzmq, never read
        _, peak = supervisor_memory(status["pid"])
        assert peak < 150 * 1024 * 1024, f"the oversized frame was buffered: peak RSS {peak >> 20} MiB"
    finally:
        assert bus_result("down", timeout=60).returncode == 0
        launcher.wait(30)
    assert launcher.returncode == 0
