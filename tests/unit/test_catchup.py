"""The Clone-pattern catch-up on its own: frames in, history needs out, events in order."""

from __future__ import annotations

from bus.catchup import Catchup, Need
from bus.protocol import Log, SupervisorStopped, Welcome, encode_published


def pub(event) -> list:
    return encode_published(event)


def log(gseq: int, engine: str = "e") -> Log:
    return Log(engine=engine, message=f"m{gseq}", ts=float(gseq), gseq=gseq)


def welcome(last: int, run: str = "r1") -> list:
    return [b"", *encode_published(Welcome(run=run, last=last))[1:]]  # on the subscription's prefix


def reply(events: list, first: int = 1, more: bool = False) -> dict:
    return {"first": first, "more": more, "next": events[-1].gseq if events else 0}


def gseqs(c: Catchup) -> list[int]:
    out = [e.gseq for e in c.ready]
    c.ready.clear()
    return out


def test_nothing_before_the_welcome_then_history_then_live() -> None:
    c = Catchup()
    c.feed(pub(log(6)))  # came before the welcome: held
    assert c.need is None and not c.ready and not c.live
    c.feed(welcome(last=5))
    assert c.need == Need(0, 5)
    c.give([log(g) for g in range(1, 6)], reply([]))
    assert gseqs(c) == [1, 2, 3, 4, 5, 6] and c.live
    c.feed(pub(log(7)))
    c.feed(pub(log(7)))  # a duplicate
    assert gseqs(c) == [7]


def test_a_gap_is_filled_before_anything_after_it() -> None:
    c = Catchup(history=None)
    c.feed(welcome(last=10))
    assert c.need is None and c.live
    c.feed(pub(log(11)))
    c.feed(pub(log(15)))
    c.feed(pub(log(16)))
    assert gseqs(c) == [11] and c.need == Need(11, 14)
    c.give([log(12), log(13), log(14)], reply([]))
    assert gseqs(c) == [12, 13, 14, 15, 16] and c.refills == 1 and c.lost == []


def test_what_history_no_longer_holds_is_recorded_as_lost() -> None:
    c = Catchup(history=None)
    c.feed(welcome(last=0))
    c.feed(pub(log(1)))
    c.feed(pub(log(50)))
    c.give([log(g) for g in range(40, 50)], reply([], first=40))
    assert gseqs(c) == [1, *range(40, 51)] and c.lost == [(2, 39)]


def test_history_pages_are_followed() -> None:
    c = Catchup()
    c.feed(welcome(last=4))
    c.give([log(1), log(2)], {"first": 1, "more": True, "next": 2})
    assert c.need == Need(2, 4)
    c.give([log(3), log(4)], reply([]))
    assert gseqs(c) == [1, 2, 3, 4] and c.need is None


def test_newest_n_and_since_replay_then_follow() -> None:
    c = Catchup(history=2)
    c.feed(welcome(last=9))
    assert c.need == Need(0, 9, last=2)
    c.give([log(8), log(9)], reply([]))
    c.feed(pub(log(10)))
    assert gseqs(c) == [8, 9, 10]
    s = Catchup(history=None, since=100.0)
    s.feed(welcome(last=3))
    assert s.need == Need(0, 3, since=100.0)
    s.give([], reply([], first=1))
    s.feed(pub(log(4)))
    assert gseqs(s) == [4] and s.lost == []


def test_filters_apply_to_delivery_not_to_gap_detection() -> None:
    c = Catchup(history=None, kinds=["sup.stop", "log"], engines=["audit"])
    assert c.history_kinds == ["log", "sup.stop"]
    c.feed(welcome(last=0))
    c.feed(pub(log(1, "audit.2")))
    c.feed(pub(log(2, "other")))
    c.feed(pub(SupervisorStopped(code=0, gseq=3)))
    assert [e.engine for e in c.ready] == ["audit.2", ""] and c.ended


def test_nothing_after_the_end_and_a_new_run_starts_over() -> None:
    c = Catchup(history=None)
    c.feed(welcome(last=0))
    c.feed(pub(SupervisorStopped(code=0, gseq=1)))
    assert gseqs(c) == [1] and c.ended
    c.feed(pub(log(1)))  # the next run's first event, before its welcome: held
    c.feed(pub(log(2)))
    assert gseqs(c) == []
    c.feed(welcome(last=1, run="r2"))  # the supervisor was started again; live only: from 2 on
    assert not c.ended and c.run == "r2"
    assert gseqs(c) == [2]


def test_garbage_is_counted() -> None:
    c = Catchup()
    c.feed([b"topic", b"\xc1"])
    c.feed([b"only"])
    assert c.rejected == 2 and not c.ready


def test_a_dropped_tail_is_found_by_the_quiet_probe() -> None:
    c = Catchup(history=None)
    c.feed(welcome(last=0))
    c.feed(pub(log(1)))
    assert gseqs(c) == [1]
    c.probe({"run": "r1", "last": 1})  # nothing missed: nothing asked
    assert c.need is None and c.refills == 0
    c.probe({"run": "r1", "last": 4})  # 2..4 were published, the publisher dropped them for us
    assert c.need == Need(1, 4) and c.refills == 1
    c.give([log(2), log(3), log(4)], reply([]))
    c.feed(pub(log(5)))
    assert gseqs(c) == [2, 3, 4, 5]


def test_a_run_whose_end_we_missed_is_finished_from_its_history_first() -> None:
    c = Catchup(history=None)
    c.feed(welcome(last=0))
    c.feed(pub(log(1)))
    assert gseqs(c) == [1]
    c.feed(pub(log(1, engine="next-run")))  # the new supervisor's first events (before its welcome to us)
    c.feed(welcome(last=1, run="r2"))
    assert c.need == Need(1, None) and c.run == "r1"  # the rest of r1, to its end
    c.feed(pub(log(2, engine="next-run")))  # r2 goes on meanwhile: held
    c.give([log(2), SupervisorStopped(code=0, gseq=3)], reply([log(2)]))
    assert gseqs(c) == [2, 3] and c.ended and c.run == "r1"  # r1 ended there: so do we


def test_a_run_that_never_ended_leads_on_to_the_next() -> None:
    c = Catchup(history=None)
    c.feed(welcome(last=0))
    c.feed(pub(log(1)))
    c.feed(welcome(last=1, run="r2"))  # r1's supervisor was killed: no sup.stop in its history
    c.give([log(2)], reply([log(2)]))
    assert c.run == "r2" and not c.ended and c.need is None
    c.feed(pub(log(2, engine="r2")))
    assert gseqs(c) == [1, 2, 2]


def test_an_earlier_run_the_supervisor_cannot_serve_is_recorded_as_lost() -> None:
    c = Catchup(history=None)
    c.feed(welcome(last=0))
    c.feed(pub(log(1)))
    c.feed(welcome(last=0, run="r2"))
    c.unavailable()  # a supervisor without a journal
    assert c.lost == [(2, None)] and c.run == "r2" and c.live
