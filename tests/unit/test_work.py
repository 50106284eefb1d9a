"""supervisor/work.py with callables for its sockets: what held requests are answered with,
and what becomes of jobs whose reply could not reach their engine."""

from __future__ import annotations

from typing import Any

import msgpack

from bus.supervisor.queues import QueueSpec
from bus.supervisor.work import Work


class Wire:
    """What Work publishes and delivers; `refuse` names peers whose replies cannot be delivered."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.replies: list[tuple[bytes, dict[str, Any]]] = []
        self.refuse: set[bytes] = set()

    def deliver(self, envelope: list[bytes], reply: list[Any]) -> bool:
        if envelope[0] in self.refuse:
            return False
        self.replies.append((envelope[0], msgpack.unpackb(reply[-1], raw=False)))
        return True

    def take_replies(self) -> list[tuple[bytes, dict[str, Any]]]:
        out, self.replies = self.replies, []
        return out


def make() -> tuple[Work, Wire]:
    wire = Wire()
    clock = iter(range(10**9))
    work = Work({"q": QueueSpec()}, "run12345", publish=wire.events.append, deliver=wire.deliver, clock=lambda: float(next(clock)), monotonic=lambda: 0.0)
    return work, wire


def unpack(frames: list[Any]) -> dict[str, Any]:
    return msgpack.unpackb(frames[-1], raw=False)


def submit(work: Work, n: int) -> list[str]:
    reply, queued = work.submit(1, "q", [{"n": i} for i in range(n)], None, False, "")
    assert queued
    return unpack(reply)["ids"]


def test_a_drain_answers_waits_for_queued_jobs_and_the_close_answers_the_rest() -> None:
    work, wire = make()
    running, queued = submit(work, 2)
    assert work.take([b"engine"], 7, "w.1", "q", 1, 30.0, False) == []  # held, then answered with `running`
    assert [r["jobs"][0]["id"] for _, r in wire.take_replies()] == [running]
    assert work.job([b"c1"], 8, queued, 60.0) == [] and work.job([b"c2"], 9, running, 60.0) == []  # both held
    work.drain()
    replies = wire.take_replies()
    assert [(peer, r["id"], r["ok"], r["code"]) for peer, r in replies] == [(b"c1", 8, False, "stopping")]
    assert f"job {queued} is queued" in replies[0][1]["error"]
    late = unpack(work.job([b"c3"], 10, queued, 60.0))  # a wait for a queued job is not held while stopping
    assert (late["ok"], late["code"]) == (False, "stopping")
    work.gone("w.1", "killed by SIGKILL")  # the stop timeout ended the running job: it is queued for the next start
    assert wire.take_replies() == []  # (still held: the loop is not over)
    work.close()
    replies = wire.take_replies()
    assert [(peer, r["id"], r["code"]) for peer, r in replies] == [(b"c2", 9, "stopping")] and f"job {running} is queued" in replies[0][1]["error"]


def test_a_reply_that_cannot_reach_its_engine_gives_its_jobs_back_unstarted() -> None:
    work, wire = make()
    wire.refuse.add(b"gone")
    first, second = submit(work, 2)
    assert work.take([b"gone"], 1, "w.1", "q", 2, 30.0, False) == []
    assert work.queues.jobs[first].state == "queued" and work.queues.jobs[first].attempt == 0  # not counted: it never started
    assert work.lost_replies == 1
    retried = [e for e in wire.events if e.KIND == "job.retried"]
    assert sorted(e.job for e in retried) == sorted([first, second]) and all("disconnected" in e.reason for e in retried)
    assert work.take([b"alive"], 2, "w.2", "q", 2, 30.0, False) == []
    ((peer, reply),) = wire.take_replies()
    assert peer == b"alive" and [(j["id"], j["attempt"]) for j in reply["jobs"]] == [(first, 1), (second, 1)]


def test_a_queued_reply_whose_peer_vanished_later_is_reported_and_its_jobs_go_back() -> None:
    work, wire = make()
    (job,) = submit(work, 1)
    work.take([b"slow"], 3, "w.1", "q", 1, 30.0, False)
    ((_, reply),) = wire.take_replies()
    assert work.queues.jobs[job].state == "running"
    work.lost([b"slow"], [msgpack.packb(reply)])  # (what Replies says when the peer's queue is dropped)
    assert work.queues.jobs[job].state == "queued" and work.queues.jobs[job].attempt == 0
    work.lost([b"slow"], [b"\xc1not msgpack"])  # garbage is ignored, never raised
    work.lost([b"slow"], [msgpack.packb({"ok": True, "id": 4})])
