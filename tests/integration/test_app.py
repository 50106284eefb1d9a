"""The application API (bus.app, bus.aio): a private supervisor, spawned engines, their handles."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bus import AsyncBus, Bus, BusError
from bus.control_client import RequestFailed
from helpers import ENGINES, EXAMPLES, ROOT, alive

pytestmark = pytest.mark.timeout(90)

AUDIT = [sys.executable, str(EXAMPLES / "audit_engine.py")]
PACE = {"DEMO_PACE": "0.02"}


def gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still running after `seconds` (waiting on each process's exit, not sleeping)."""
    until = time.monotonic() + seconds
    left = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, until - time.monotonic()))
            if not ready and alive(pid):
                left.append(pid)
        finally:
            os.close(fd)
    return left


HOST = """
import json, sys
from bus import Bus
bus = Bus.start()
tree = bus.spawn([sys.executable, {tree!r}, "--grandchildren", "2"], name="tree")
pids = {{}}
for event in tree.events():
    words = getattr(event, "message", "").split()
    if len(words) == 2 and words[0] in ("engine", "grandchild"):
        pids.setdefault(words[0], []).append(int(words[1]))
    if len(pids.get("grandchild", [])) == 2:
        break
print(json.dumps({{**pids, "supervisor": bus._hosted.proc.pid}}), flush=True)
sys.stdin.readline()  # then it exits without closing the bus
"""


@pytest.mark.parametrize("end", ["SIGKILL", "exit"])
def test_a_host_that_dies_or_exits_takes_its_engines_and_their_grandchildren_within_2s(runtime_dir: Path, tmp_path: Path, end: str) -> None:
    script = tmp_path / "host.py"
    script.write_text(HOST.format(tree=str(ENGINES / "tree.py")))
    host = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        ready, _, _ = select.select([host.stdout], [], [], 30)
        assert ready, "the host did not report its engine's processes"
        pids = json.loads(host.stdout.readline())  # type: ignore[union-attr]
        tree = pids["engine"] + pids["grandchild"]
        assert len(tree) == 3 and all(alive(p) for p in tree)
        if end == "SIGKILL":
            host.kill()  # no atexit, no finally: only the pipe it held closes
        else:
            host.stdin.write("\n")  # type: ignore[union-attr]
            host.stdin.flush()  # type: ignore[union-attr]
        host.wait(timeout=5)  # an exit is not held up by the stop timeout (10 s) of engines that ignore SIGTERM
        assert gone_within(tree, 2.0) == [], "engine or grandchildren alive 2 s after their host was SIGKILLed"
        assert gone_within([pids["supervisor"]], 10.0) == [], "the private supervisor outlived its host"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


def test_threads_each_follow_their_own_engine_in_order(runtime_dir: Path) -> None:
    sites = ["a.example", "b.example", "c.example"]
    got: dict[str, list] = {}
    errors: list[BaseException] = []
    with Bus.start() as bus:
        def follow(site: str) -> None:
            try:
                handle = bus.spawn([*AUDIT, "--site", site, "--pages", "3"], name=site.split(".")[0], env=PACE)
                got[site] = list(handle.events())
                assert handle.wait(timeout=30).ok
            except BaseException as exc:  # (said by the test below)
                errors.append(exc)

        threads = [threading.Thread(target=follow, args=(s,)) for s in sites]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        for site in sites:
            events = got[site]
            name = site.split(".")[0]
            assert {e.engine for e in events} == {name}
            gseqs = [e.gseq for e in events]
            assert gseqs == sorted(gseqs) and len(set(gseqs)) == len(gseqs)
            seqs = [e.seq for e in events if e.seq is not None]
            assert seqs == list(range(1, len(seqs) + 1)), "an engine event is missing or repeated"
            assert sum(e.kind == "screenshot" for e in events) == 3
            assert [e.fields()["summary"]["site"] for e in events if e.kind == "result"] == [site]
            assert events[-1].kind == "state" and events[-1].fields()["state"] == "exited"
        late = bus.handle("a")
        assert [e.gseq for e in late.events()] == [e.gseq for e in got["a.example"]], "a late reader gets another story"


def test_stop_wait_snapshot_and_refusals(runtime_dir: Path, tmp_path: Path) -> None:
    with Bus.start(stop_timeout=2) as bus:
        sleeper = bus.spawn(["sleep", "60"], name="nap", instances=2)
        assert sleeper.names == ("nap.1", "nap.2")
        assert set(sleeper.snapshot()) == {"nap.1", "nap.2"}
        with pytest.raises(RequestFailed) as taken:
            bus.spawn(["sleep", "1"], name="nap")
        assert taken.value.code == "name-taken"
        with pytest.raises(RequestFailed) as missing:
            bus.spawn([str(tmp_path / "no-such-program")], name="ghost")
        assert missing.value.code == "bad-engine" and "no-such-program" in str(missing.value)
        with pytest.raises(BusError, match="shell=True"):
            bus.spawn("sleep 1")
        sleeper.stop()
        ended = sleeper.wait(timeout=20)
        assert ended.state == "exited" and ended.signal == "SIGTERM" and not ended.ok
        assert [i.name for i in ended.instances] == ["nap.1", "nap.2"]
        assert bus.forget(sleeper) == ["nap.1", "nap.2"]
        failing = bus.spawn([sys.executable, "-c", "raise SystemExit(3)"], name="three")
        assert failing.wait(timeout=20).code == 3
    assert not (runtime_dir / bus._hosted.session).exists()  # type: ignore[union-attr]  (a private session leaves no run directory)


def test_closing_stops_engines_that_ignore_sigterm_within_the_stop_timeout(runtime_dir: Path) -> None:
    bus = Bus.start(stop_timeout=1)
    stubborn = bus.spawn([sys.executable, str(ENGINES / "stubborn.py")], name="stubborn")
    pid = next(e for e in stubborn.snapshot().values())["pid"]
    began = time.monotonic()
    bus.close()
    took = time.monotonic() - began
    assert not alive(pid)
    assert bus._hosted is not None and bus._hosted.proc.returncode == 0
    assert took < 1 + 5, f"close took {took:.1f}s with a stop timeout of 1s"  # a hang bound, not a speed


def test_a_private_supervisor_that_cannot_start_is_one_error(runtime_dir: Path) -> None:
    with pytest.raises(BusError, match="history_events"):
        Bus.start(history_events=-1)
    with Bus.start(session="mine"):
        with pytest.raises(BusError, match="in use by another supervisor"):
            Bus.start(session="mine")


def test_asyncio_handles_in_one_loop(runtime_dir: Path) -> None:
    async def main() -> None:
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        async with AsyncBus.start(stop_timeout=2) as bus:
            handles = [await bus.spawn([*AUDIT, "--site", f"{n}.example", "--pages", "2"], name=f"s{n}", env=PACE) for n in range(3)]

            async def kinds(h):  # type: ignore[no-untyped-def]
                return [e async for e in h.events()]

            ticks = 0

            async def ticker() -> None:  # the loop is never blocked: this keeps running meanwhile
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            tick = asyncio.create_task(ticker())
            stories = await asyncio.gather(*(kinds(h) for h in handles))
            tick.cancel()
            assert ticks > 10
            for h, story in zip(handles, stories):
                assert {e.engine for e in story} == {h.name}
                findings = sum(e.kind == "finding" for e in story)
                ended = await h.wait()
                assert ended.code == 0 and ended.result == {"site": f"{h.name[1:]}.example", "pages": 2, "findings": findings}
            again = [e async for e in handles[0].events()]
            assert [e.gseq for e in again] == [e.gseq for e in stories[0]]
        assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # the host's own, untouched

    asyncio.run(main())


def test_a_name_used_again_is_a_new_story_and_an_end_gone_from_history_still_ends(runtime_dir: Path) -> None:
    with Bus.start(history_events=10, stop_timeout=2) as bus:
        first = bus.spawn([sys.executable, "-c", "raise SystemExit(3)"], name="job")
        assert first.wait(timeout=20).code == 3
        bus.forget(first)
        second = bus.spawn([sys.executable, "-c", "print('again')"], name="job")
        story = list(second.events())
        assert [e.fields()["message"] for e in story if e.kind == "log"] == ["again"]
        assert second.wait(timeout=20).code == 0, "the earlier job's end was taken for this one's"
        noisy = bus.spawn([sys.executable, "-c", "for i in range(50): print(i)"], name="noisy")
        assert noisy.wait(timeout=20).ok
        late = bus.handle("job")  # its events have left the 10-event history: the supervisor's word ends it
        late.after = second.after
        ended = late.wait(timeout=20)
        assert ended.state == "exited" and ended.code == 0
        assert [e.kind for e in late.events(history=0)] == []  # nothing more will come: ends, no hang
