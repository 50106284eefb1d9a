"""Subscribers that lose nothing: a stalled one, a late one, one after a restart.

The stalled subscriber's socket queue is made small (hwm=1000) so the
publisher really drops for it while engines stream; it must get everything
back from history, in order, once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import statistics
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import zmq
from helpers import Collector, ENGINES, Watcher, bus, bus_result, finish, local_endpoint, results_from, scripted, supervisor_memory, write_config

from bus import AsyncSubscriber, Subscriber
from bus.control_client import ControlClient
from bus.protocol import AnyEvent
from bus.replay import Replay
from bus.runtime import HAS_IPC, resolve

sys.path.insert(0, str(ENGINES))
from scripted import script  # noqa: E402

MiB = 1024 * 1024


def engines(specs: dict[str, tuple[int, int, int]], *extra: str) -> dict[str, list[str]]:
    return {name: scripted("--seed", str(seed), "--events", str(count), "--shots", str(shots), *extra) for name, (seed, count, shots) in specs.items()}


def identity(events: list[AnyEvent]) -> list[tuple[Any, ...]]:
    """What must match between two subscribers: order, numbering, screenshot bytes."""
    return [(e.gseq, e.kind, e.engine, e.seq, bytes(e.fields()["data"]) if e.kind == "screenshot" else None) for e in events]


def check_complete(events: list[AnyEvent], specs: dict[str, tuple[int, int, int]]) -> None:
    """A whole run: gseq 1..N without gap or duplicate, each engine's own sequence
    complete, nothing dropped by an engine, and the run's end."""
    assert [e.gseq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].kind == "sup.stop"
    for name, (_, count, shots) in specs.items():
        pushed = [e.seq for e in events if e.engine == name and e.seq is not None]
        assert pushed == list(range(1, len(pushed) + 1)), f"{name}: its own sequence numbers"
        bye = next(e for e in events if e.engine == name and e.kind == "bye").fields()
        assert bye == {"sent": len(pushed) - 1, "dropped": 0, "dropped_kinds": {}}, f"{name} dropped events (it was held up)"
        assert sum(1 for e in events if e.engine == name and e.kind == "screenshot") == shots


def control(ctx: zmq.Context) -> ControlClient:
    return ControlClient(ctx, resolve(None), timeout=10)


def test_a_stalled_subscriber_gets_every_event_and_holds_up_no_one(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context, record_property: Any) -> None:
    specs = {"a": (1, 25_000, 10), "b": (2, 25_000, 10)}
    total = sum(count for _, count, _ in specs.values())
    release = threading.Event()
    results = results_from(set(specs))
    seen = 0

    def fast_until(event: AnyEvent) -> bool:
        nonlocal seen
        seen += 1
        if seen >= total // 2:
            release.set()  # half the stream is out: let the stalled one read, the engines stream on
        return results(event)

    fast = Collector(fast_until)
    stalled = Collector(results_from(set(specs)), hold=release, hwm=1000)
    for collector in (fast, stalled):
        collector.start()
    launcher = bus("up", "--json", str(write_config(tmp_path, engines(specs, "--hold"))), stdout=open(tmp_path / "up.jsonl", "w"))
    try:
        assert stalled.subscribed.wait(60), "the stalled subscriber never subscribed"
        assert fast.reached.wait(120), "the engines did not finish their scripts"
        assert stalled.reached.wait(120), "the stalled subscriber never caught up"
        pid = control(ctx).request("hello")[0]["pid"]
        rss, peak = supervisor_memory(pid)
        down = bus_result("down", timeout=60)
        assert down.returncode == 0, down.stderr
    finally:
        finish(launcher, 60)
    events, late = fast.finish(), stalled.finish()

    check_complete(events, specs)
    assert identity(late) == identity(events), "the stalled subscriber got the same run, in order, once"
    assert stalled.refills > 0, "the publisher never dropped for the stalled subscriber: the test did not test it"
    assert fast.refills == 0, "the fast subscriber fell behind"
    latency = sorted(at - e.ts for e, at in zip(events, fast.arrivals) if e.seq is not None)
    p50, p99 = statistics.median(latency), latency[int(len(latency) * 0.99)]
    report = {"events": len(events), "stalled_refills": stalled.refills, "fast_p50_ms": round(p50 * 1000, 2), "fast_p99_ms": round(p99 * 1000, 2), "supervisor_rss_mib": round(rss / MiB, 1), "supervisor_peak_rss_mib": round(peak / MiB, 1)}
    record_property("report", report)
    print(f"\nstalled subscriber: {json.dumps(report)}")
    # Bounded: the history ring (100,000 events / 256 MiB) and the publisher's
    # per-subscriber queue (10,000 messages) are the only things that grow.
    assert peak < 256 * MiB, f"supervisor peak RSS {peak / MiB:.0f} MiB"


def test_a_stalled_subscriber_holds_bounded_image_bytes_and_the_others_get_every_screenshot(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    """libzmq keeps a screenshot for each subscriber's queue; one that reads nothing would keep
    up to 10,000 of them. Past the budget, screenshots are not published and every subscriber
    takes them from history instead: the one that reads gets them all, byte for byte, in order."""
    from supervisor.blobs import BUDGET

    go = tmp_path / "go"
    os.mkfifo(go)
    hold = os.open(go, os.O_RDWR)  # held open: the engine's open never blocks, its read waits for our byte
    shooter = {"command": scripted("--seed", "7", "--events", "1600", "--shots", "1600", "--go", str(go), "--hold"), "droppable": []}
    launcher = bus("up", "--plain", str(write_config(tmp_path, {"shooter": shooter})), stdout=subprocess.DEVNULL)
    stalled = ctx.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        with Subscriber(timeout=30, connect_timeout=60, kinds=["screenshot", "result"]) as sub:
            sub.wait_ready(timeout=60)
            stalled.connect(local_endpoint("pub"))
            assert stalled.poll(60_000), "the stalled subscriber was never welcomed"  # from now on it reads nothing
            os.write(hold, b"g")
            shots = []
            while not shots or shots[-1].kind != "result":
                event = sub.recv(timeout=60)
                assert event is not None, "the reading subscriber was held up"
                shots.append(event)
            status = sub.control.request("status")[0]
            refills = sub.refills
    finally:
        stalled.close(linger=0)
        os.close(hold)
        assert bus_result("down", timeout=60).returncode == 0
        launcher.wait(30)
    sent = [kwargs for method, kwargs in script(7, 1600, 1600) if method == "screenshot"]
    assert sum(len(k["data"]) for k in sent) > 2 * BUDGET, "the test must send more than the budget"
    got = [(e.fields()["name"], bytes(e.fields()["data"])) for e in shots if e.kind == "screenshot"]
    assert got == [(k["name"], k["data"]) for k in sent], "every screenshot, byte for byte, in order"
    assert status["counters"]["withheld"] > 0, "the budget was never reached: the test did not test it"
    assert refills > 0, "the withheld screenshots came from history"


def test_a_subscriber_stalled_past_the_end_of_the_run_finishes_it_from_the_journal(runtime_dir: Path, tmp_path: Path) -> None:
    specs = {"a": (3, 8_000, 4), "b": (4, 8_000, 4)}
    release = threading.Event()
    fast = Collector()
    stalled = Collector(hold=release, hwm=500)
    for collector in (fast, stalled):
        collector.start()
    launcher = bus("up", "--json", str(write_config(tmp_path, engines(specs))), stdout=open(tmp_path / "up.jsonl", "w"))
    try:
        assert stalled.subscribed.wait(60), "the stalled subscriber never subscribed"
        events = fast.finish()
        assert finish(launcher, 60) == 0  # the run is over, its supervisor gone
    finally:
        release.set()
    late = stalled.finish()
    check_complete(events, specs)
    assert identity(late) == identity(events)
    assert stalled.refills > 0 or not HAS_IPC  # (over TCP the kernel's socket buffers may hold the whole run: then nothing was dropped)


def test_a_run_replays_whole_after_it_ended_from_the_journal_and_from_a_restarted_supervisor(runtime_dir: Path, tmp_path: Path) -> None:
    specs = {"a": (5, 600, 6), "b": (6, 400, 4)}
    live = Collector()
    live.start()
    asynchronous: list[AnyEvent] = []

    async def follow() -> None:
        async with AsyncSubscriber(timeout=10, connect_timeout=60) as sub:
            async for event in sub:
                asynchronous.append(event)

    async_thread = threading.Thread(target=asyncio.run, args=(follow(),), daemon=True)
    async_thread.start()
    first = bus_result("up", "--json", str(write_config(tmp_path, engines(specs))), timeout=120)
    assert first.returncode == 0, first.stderr
    events = live.finish()
    async_thread.join(60)
    check_complete(events, specs)
    assert identity(asynchronous) == identity(events), "the asyncio subscriber saw the same run"

    # No supervisor: the journal, read directly.
    offline = Replay(run="last")
    assert identity(list(offline)) == identity(events) and offline.source == "journal" and offline.lost == []
    run_id = offline.run
    shots = tmp_path / "shots"
    tail = bus_result("tail", "--run", "last", "--json", "--shots", str(shots))
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(line)["gseq"] for line in tail.stdout.splitlines()] == [e.gseq for e in events]
    saved = {p.name: p.read_bytes() for p in shots.iterdir()}
    assert sorted(saved.values()) == sorted(bytes(e.fields()["data"]) for e in events if e.kind == "screenshot")

    # A new supervisor in the same session: it serves the earlier run from its journal.
    other = tmp_path / "second"
    other.mkdir()
    launcher = bus("up", "--json", str(write_config(other, {"idle": scripted("--events", "3", "--hold")})), stdout=open(tmp_path / "second.jsonl", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60, kinds=["result"]) as sub:
            assert sub.recv(timeout=60).engine == "idle"  # type: ignore[union-attr]  # the new run is up
            assert sub.run != run_id
        replayed = Replay(run=run_id[:8])
        assert identity(list(replayed)) == identity(events) and replayed.source == "supervisor"
        newest_five = [e.gseq for e in Replay(run=run_id, last=5)]
        assert newest_five == [e.gseq for e in events[-5:]]
        runs = bus_result("runs")
        assert runs.returncode == 0, runs.stderr
        lines = runs.stdout.splitlines()
        assert len(lines) == 2 and lines[0].startswith(run_id) and "exit code 0" in lines[0] and "running now" in lines[1]
        assert f"{len(events):>7} events" in lines[0]
    finally:
        assert bus_result("down").returncode == 0
        finish(launcher, 60)


def test_a_run_nobody_recorded_cannot_be_replayed_and_says_so(runtime_dir: Path) -> None:
    result = bus_result("tail", "--run", "last")
    assert result.returncode == 4, result.stderr
    assert "no supervisor answered" in result.stderr and "no journal" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("wanted", ["nope", "ab"])
def test_an_unknown_run_is_named_with_the_known_ones(runtime_dir: Path, tmp_path: Path, wanted: str) -> None:
    first = bus_result("up", "--json", str(write_config(tmp_path, {"one": scripted("--events", "3")})))
    assert first.returncode == 0, first.stderr
    result = bus_result("tail", "--run", wanted)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"run {wanted!r}: no such run; known runs: " in result.stderr


def test_a_late_joiner_starts_from_the_snapshot_and_history_by_time(runtime_dir: Path, tmp_path: Path) -> None:
    specs = {"a": (7, 300, 3), "b": (8, 200, 2)}
    launcher = bus("up", "--json", str(write_config(tmp_path, engines(specs, "--hold"))), stdout=open(tmp_path / "up.jsonl", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60) as sub:
            watcher = Watcher(sub)
            watcher.until(lambda: sum(e.kind == "result" for e in watcher.events) == 2)
            snap = sub.snapshot()
            watcher.until(lambda: watcher.events[-1].gseq >= snap["last"])  # type: ignore[operator]
            seen = [e for e in watcher.events if e.gseq <= snap["last"]]  # type: ignore[operator]
            for engine in snap["engines"]:
                name = engine["name"]
                mine = [e for e in seen if e.engine == name]
                logs = [[e.ts, *(e.fields()[k] for k in ("level", "stream", "message"))] for e in mine if e.kind == "log"]
                shot = [e for e in mine if e.kind == "screenshot"][-1]
                progress = [e.fields() for e in mine if e.kind == "progress"][-1]
                assert (engine["state"], engine["phase"]) == ("running", "run")
                assert engine["progress"] == {k: progress[k] for k in ("phase", "done", "total", "pct", "detail")}
                assert engine["result"] == next(e for e in mine if e.kind == "result").fields()["summary"]
                assert engine["findings"] == sum(e.kind == "finding" for e in mine) > 0
                assert engine["logs"] == logs[-20:] and len(engine["logs"]) == 20
                assert engine["screenshot"] == {"gseq": shot.gseq, "name": shot.fields()["name"], "mime": "image/png", "size": len(shot.fields()["data"]), "ts": shot.ts}
                reply, frames = sub.control.request("history", after=shot.gseq - 1, until=shot.gseq)  # type: ignore[operator]
                assert reply["count"] == 1 and bytes(frames[1]) == bytes(shot.fields()["data"])

            cut = seen[len(seen) // 2].ts
            assert identity(list(Replay(since=cut))) == identity([e for e in seen if e.ts >= cut])
            everything = bus_result("tail", "--since", "1h", "--no-follow", "--json")
            assert everything.returncode == 0, everything.stderr
            gseqs = [json.loads(line)["gseq"] for line in everything.stdout.splitlines()]
            assert gseqs[: len(seen)] == [e.gseq for e in seen] and gseqs == list(range(1, len(gseqs) + 1))

            summary = bus("tail", "--plain", "-n", "0", "-e", "a")
            first = summary.stdout.readline()  # type: ignore[union-attr]
            assert re.fullmatch(r"\d\d:\d\d:\d\d a\s+\| now: running, pid \d+, phase run \d+%, last screenshot shot2\.png\n", first), first
    finally:
        assert bus_result("down").returncode == 0
        finish(launcher, 60)
    rest, _ = summary.communicate(timeout=60)
    assert summary.returncode == 0
    assert all(re.match(r"\d\d:\d\d:\d\d (a\s+|bus\s+)\|", line) for line in rest.splitlines()), rest
    assert rest.splitlines()[-1].endswith("bus    | supervisor stopped: down requested (exit code 0)"), rest


def test_bad_tail_arguments_are_one_line_errors(runtime_dir: Path) -> None:
    for args, words in ((["--since", "yesterday"], "--since 'yesterday' is not a duration like 30s, 10m, 2h or 1d"), (["-n", "-3"], "-n/--last must be from 0 to 1,000,000,000, or 'all'; got -3")):
        result = bus_result("tail", *args)
        assert result.returncode == 2 and result.stderr.strip().endswith(words) and len(result.stderr.strip().splitlines()) == 1, result.stderr
