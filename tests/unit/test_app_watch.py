"""EndWatch (bus/app.py): when a handle's engine has ended, from its events or the supervisor's word."""

from __future__ import annotations

import pytest

from bus.app import EndWatch, engine_table, spawn_name
from bus.errors import BusError, UsageError
from bus.protocol import EngineExited, EngineState, Log, Result, SupervisorStopped


def state(engine: str, value: str, gseq: int, reason: str = "") -> EngineState:
    return EngineState(engine=engine, state=value, reason=reason, gseq=gseq)


def test_every_instance_must_end_and_the_worst_is_said() -> None:
    watch = EndWatch("w", frozenset({"w.1", "w.2"}))
    assert watch.take(state("w.1", "running", 1)) and not watch.done
    watch.take(EngineExited(engine="w.1", pid=5, code=0, gseq=2))
    watch.take(state("w.1", "exited", 3))
    assert not watch.done
    watch.take(EngineExited(engine="w.2", pid=6, signal=9, signame="SIGKILL", gseq=4))
    assert not watch.take(Log(engine="other", message="x", gseq=5))
    watch.take(state("w.2", "backoff", 6))
    assert not watch.done  # a restart is coming
    watch.take(state("w.2", "fatal", 7, "restarted too often"))
    assert watch.done
    ended = watch.ended()
    assert (ended.state, ended.code, ended.signal, ended.ok) == ("fatal", None, "SIGKILL", False)
    assert [(i.name, i.code) for i in ended.instances] == [("w.1", 0), ("w.2", None)]


def test_events_of_an_earlier_engine_of_the_name_are_not_its_own() -> None:
    watch = EndWatch("job", frozenset({"job"}), after=10)
    assert not watch.take(state("job", "exited", 9))
    assert not watch.take(Result(engine="job", summary={"old": True}, gseq=10))
    assert not watch.done
    watch.take(Result(engine="job", summary={"new": True}, gseq=12))
    watch.take(state("job", "exited", 13))
    assert watch.done and watch.ended().result == {"new": True}


def test_the_supervisors_word_ends_it_only_once_the_reader_has_everything_up_to_it() -> None:
    snapshot = {"last": 50, "engines": [{"name": "job", "state": "exited", "reason": "exit code 2", "exit": {"code": 2, "signame": ""}, "result": {"n": 1}}]}
    watch = EndWatch("job", frozenset({"job"}))
    watch.settle(snapshot, position=49)  # its end may still be on the way
    assert not watch.done
    watch.settle(snapshot, position=50)
    assert watch.done
    ended = watch.ended()
    assert (ended.state, ended.code, ended.result) == ("exited", 2, {"n": 1})
    running = EndWatch("job", frozenset({"job"}))
    running.settle({"last": 5, "engines": [{"name": "job", "state": "running"}]}, position=5)
    assert not running.done
    forgotten = EndWatch("job", frozenset({"job"}))
    forgotten.settle({"last": 5, "engines": []}, position=5)
    assert forgotten.done and forgotten.ended().state == "gone"


def test_the_end_of_the_run_ends_it() -> None:
    watch = EndWatch("job", frozenset({"job"}))
    watch.take(state("job", "running", 1))
    assert not watch.take(SupervisorStopped(code=0, reason="down", gseq=2))
    assert watch.done and watch.ended().state == "gone"


def test_spawn_requests_are_checked_before_they_are_sent() -> None:
    with pytest.raises(BusError, match="shell=True"):
        engine_table("sleep 1", local=True)
    assert engine_table("sleep 1 && echo", local=False, shell=True) == {"command": "sleep 1 && echo", "shell": True}
    table = engine_table(["python", "w.py"], local=True, env={"A": "1"}, instances=2, restart=None)
    assert table["cwd"] and table["env"] == {"A": "1"} and table["instances"] == 2 and "restart" not in table
    with pytest.raises(UsageError, match="not a valid engine name"):
        spawn_name("bad name", ["x"])
    assert spawn_name(None, ["python", "audit_engine.py"]).startswith("audit_engine-")
