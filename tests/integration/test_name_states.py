"""Generated hellos, heartbeats, byes, exits and control requests under every
state a name can be in: free, supervised (running, and ended), remote (running,
and ended). The supervisor must take each (publish, refuse and count, or
ignore), never raise, and keep answering.

Found before it existed: a launcher's hello under a supervised name raised
`ValueError: undeclared protocol error reason 'name-taken'` out of the loop.

The supervisor runs in this process, in a thread (its own sockets, no signal
handlers), so a raise would end that thread: checked after every example."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers import local_endpoint

from bus.protocol import EngineBye, EngineExited, EngineHello, Heartbeat, Log, Progress, encode
from bus.protocol.control import encode_request
from bus.protocol.errors import CONTROL_ERRORS, ENGINE_REJECTS
from bus.supervisor import EngineSpec, Supervisor, SupervisorConfig

EXAMPLES = int(os.environ.get("BUS_PROPERTY_EXAMPLES", "1000"))
NAMES = ["sup", "done", "rem", "gone"]  # supervised and running, supervised and ended, remote, remote and ended
FREE = [f"free{n}" for n in range(1500)]  # more than the 1,000 remote engines a supervisor keeps: the bound is reached too


def counts() -> st.SearchStrategy[dict[str, int]]:
    return st.dictionaries(st.sampled_from(["log", "progress", "screenshot", "heartbeat", "result"]), st.integers(0, 2**40), max_size=3)


def engine_messages(name: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    seq = st.none() | st.integers(1, 2**20)
    pid = st.integers(1, 2**31)
    return st.one_of(
        st.builds(EngineHello, engine=name, seq=seq, pid=pid, host=st.sampled_from(["", "h1", "h2"]), heartbeat=st.none() | st.floats(0.05, 60)),
        st.builds(Heartbeat, engine=name, seq=seq, dropped=st.integers(0, 2**40), dropped_kinds=counts(), idle=st.floats(0, 1e6)),
        st.builds(EngineBye, engine=name, seq=seq, sent=st.integers(0, 2**40), dropped=st.integers(0, 2**40), dropped_kinds=counts()),
        st.builds(lambda engine, seq, pid, code, sig: EngineExited(engine=engine, seq=seq, pid=pid, code=None if sig else code, signal=sig or None, signame="SIGX" if sig else ""),
                  name, seq, pid, st.integers(0, 255), st.integers(0, 64)),
        st.builds(Log, engine=name, seq=seq, message=st.text(max_size=20)),
        st.builds(Progress, engine=name, seq=seq, done=st.none() | st.integers(0, 100), total=st.none() | st.integers(1, 100)),
    )


def control_requests(name: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    verbs = st.sampled_from(["start", "stop", "restart"])
    return st.one_of(
        st.builds(lambda n, at, done: encode_request("hello", 1, engine=n, subscriber="prop", at=at, done=done), name, st.integers(0, 2**40), st.booleans()),
        st.builds(lambda op: encode_request(op, 2), st.sampled_from(["status", "snapshot", "runs", "hello"])),
        st.builds(lambda verb, n: encode_request(verb, 3, name=n), verbs, name.filter(lambda n: n not in ("sup", "done"))),  # (not the spawned ones: a restart per example would be slow, not new)
        st.builds(lambda after, until: encode_request("history", 4, after=after, until=until, run=None), st.integers(0, 2**40), st.none() | st.integers(0, 2**40)),
        st.builds(lambda n, table: encode_request("spawn", 5, name=n, engine=table), name | st.text(max_size=12), engine_tables()),
        st.builds(lambda n: encode_request("forget", 6, name=n), name.filter(lambda n: n not in ("sup", "done")) | st.text(max_size=12)),  # (the scene's engines stay)
    )


def engine_tables() -> st.SearchStrategy[Any]:
    """Spawn requests' engine maps, mostly wrong; a command is never a program that exists."""
    junk = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=6) | st.lists(st.text(max_size=4), max_size=3) | st.dictionaries(st.text(max_size=4) | st.binary(max_size=4), st.text(max_size=4), max_size=2)
    command = st.lists(st.text(max_size=6).map(lambda t: "no-such-program-" + t), min_size=0, max_size=3) | junk
    settings = st.dictionaries(st.sampled_from(["env", "cwd", "instances", "restart", "stop_signal", "stop_timeout", "droppable", "restrat"]), junk, max_size=4)
    return st.builds(lambda c, rest: {"command": c, **rest}, command, settings) | junk


class Bench:
    """A supervisor in a thread, and the sockets to talk to it as engines and clients do."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bp"))
        os.environ.update(BUS_RUNTIME_DIR=str(self.tmp), BUS_STATE_DIR=str(self.tmp / "state"))
        engines = (
            EngineSpec(name="sup", command=(sys.executable, "-c", "import time; time.sleep(3600)")),
            EngineSpec(name="done", command=("true",)),
        )
        self.ctx = zmq.Context()
        # serve_after short: the random hellos include subscribers that say they are behind, and the
        # supervisor would wait for them 30 s after its run (racing close()'s join, then ctx.term()).
        self.sup = Supervisor(SupervisorConfig(engines=engines, session="prop", exit_when_done=False, watchdog=False, journal=False, serve_after=0.5), ctx=self.ctx)
        self.failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(local_endpoint("pull", "prop"))
        self.ctl = self.ctx.socket(zmq.DEALER)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.connect(local_endpoint("ctl", "prop"))
        self.sentinels = 0
        deadline = time.monotonic() + 30
        while self.status()["engines"][1]["state"] != "exited":  # 'done' has run and ended
            assert time.monotonic() < deadline, "the supervisor did not start its engines"

    def _run(self) -> None:
        try:
            self.sup.run(handle_signals=False)
        except BaseException as exc:  # noqa: BLE001 - the property is that this never happens
            self.failed.append(exc)

    def request(self, body: bytes) -> dict[str, Any]:
        self.ctl.send_multipart([b"", body])
        assert self.ctl.poll(10_000), "no reply: the supervisor stopped answering"
        return msgpack.unpackb(self.ctl.recv_multipart()[1])

    def status(self) -> dict[str, Any]:
        return self.request(encode_request("status", "s"))

    def settle(self, errors_before: int) -> None:
        """Everything sent so far has been taken (a log for a name nobody has is refused as
        unknown-engine, and counted), and none of it reached a bug."""
        self.sentinels += 1
        self.push.send_multipart(encode(Log(engine="sentinel-nobody", message="s")))
        deadline = time.monotonic() + 10
        while (said := self.status())["rejects"].get("unknown-engine", 0) < self.sentinels:
            assert not self.failed and self.thread.is_alive(), f"the supervisor raised: {self.failed!r}"
            assert time.monotonic() < deadline, "the supervisor did not take what was sent"
        assert said["internal_errors"] == errors_before, "a message reached a bug (its traceback is on stderr)"

    def close(self) -> None:
        self.sup.stop("down requested")
        self.thread.join(30)
        self.push.close()
        self.ctl.close()
        self.ctx.term()
        shutil.rmtree(self.tmp, ignore_errors=True)


def test_no_message_under_any_name_state_makes_the_supervisor_raise(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("BUS_SESSION", raising=False)
    bench = Bench()
    names = st.sampled_from(NAMES) | st.sampled_from(FREE)
    try:
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(st.one_of(engine_messages(names), control_requests(names)), min_size=1, max_size=6))
        def each(steps: list[Any]) -> None:
            errors = bench.status()["internal_errors"]
            # Set the scene: 'rem' attached and running, 'gone' attached and ended.
            for event in (EngineHello(engine="rem", pid=7, host="far", heartbeat=30.0), EngineHello(engine="gone", pid=8, host="far"), EngineBye(engine="gone", sent=0)):
                bench.push.send_multipart(encode(event))
            for step in steps:
                if isinstance(step, bytes):
                    reply = bench.request(step)
                    assert reply["ok"] or reply["code"] in CONTROL_ERRORS, reply
                else:
                    bench.push.send_multipart(encode(step))
            bench.settle(errors)

        each()
        said = bench.status()
        assert said["internal_errors"] == 0
        assert set(said["rejects"]) <= set(ENGINE_REJECTS)
        assert said["counters"]["received"] >= EXAMPLES
        assert {e["name"]: e["remote"] for e in said["engines"]}["sup"] is False  # a supervised name stays supervised
    finally:
        bench.close()
    assert not bench.failed, bench.failed
