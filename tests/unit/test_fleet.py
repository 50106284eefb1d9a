"""The fleet's decisions, driven by hand: a fake process seam, a fake clock, no sockets, no sleeps.

The fleet is a state machine without I/O (supervisor/fleet.py): these tests feed it
what the loop would (spawned processes' exits, engine events, output lines, ticks
of a clock they move themselves) and check what it says to publish and what it
asks of the processes. The real processes are tested end to end in tests/integration.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest

from bus.protocol import EngineBye, EngineHello, Event, Heartbeat, Log, RemoteProtocolError
from bus.supervisor.children import Child, Proc
from bus.supervisor.config import EngineSpec, RestartPolicy, SupervisorConfig
from bus.supervisor.fleet import SILENT_EXIT_GRACE, Fleet, Output, Publish, StopAll
from bus.supervisor.lifecycle import State
from bus.supervisor.timers import KILL_WAIT, STARTED_AFTER


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeProcesses:
    """The process seam, recorded: which processes were started and what each was sent."""

    def __init__(self) -> None:
        self.started: list[Proc] = []
        self.sent: list[tuple[int, str]] = []      # (pid, signal name or "SIGKILL")
        self.groups_left: set[int] = set()         # pids whose group still has processes after the leader exited
        self.forgotten: list[int] = []
        self.exited: set[int] = set()              # pids whose process ended
        self.fail: OSError | None = None           # the next spawn raises this
        self._pid = 100

    def spawn(self, owner: str, command: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> Proc:
        if self.fail is not None:
            raise self.fail
        self._pid += 1
        proc = Proc(self._pid, owner)
        self.started.append(proc)
        return proc

    def terminate(self, pid: int, signame: str) -> bool:
        if pid in self.exited and pid not in self.groups_left:
            return False  # an empty group: nothing to signal
        self.sent.append((pid, signame))
        return True

    def kill(self, pid: int) -> bool:
        self.sent.append((pid, "SIGKILL"))
        return True

    def forget(self, pid: int) -> None:
        self.forgotten.append(pid)


class Run:
    """A fleet with one engine, its fake processes and clock, and everything it said to publish."""

    def __init__(self, **spec: Any) -> None:
        config = spec.pop("config", {})
        self.spec = EngineSpec(name="e", command=("prog",), **spec)
        self.clock = Clock()
        self.procs = FakeProcesses()
        self.fleet = Fleet(SupervisorConfig(engines=(self.spec,), **{"drain_grace": 0.0, **config}), clock=self.clock, wall=self.clock, rng=random.Random(1))
        self.fleet.open(self.procs, endpoint="ipc:///nowhere")
        self.out: list[Output] = []
        self.seq = 0

    @property
    def child(self) -> Child:
        return self.fleet.children["e"]

    def tick(self, after: float = 0.0) -> float | None:
        self.clock.now += after
        out, due = self.fleet.tick()
        self.out += out
        return due

    def start(self) -> Proc:
        self.fleet.start_all()
        self.tick()
        return self.procs.started[-1]

    def exit(self, code: int, after: float = 0.0) -> None:
        """The current process ends `after` seconds from now (its pipes close too)."""
        self.clock.now += after
        proc = self.procs.started[-1]
        self.procs.exited.add(proc.pid)
        self.fleet.stream_closed(proc, "stdout")
        self.fleet.stream_closed(proc, "stderr")
        self.fleet.exited(proc, code, self.clock.now)
        self.tick()

    def send(self, event: Event) -> None:
        self.out += self.fleet.engine_event(event)

    def sdk(self, kind: type[Event], **fields: Any) -> Event:
        self.seq += 1
        return kind(engine="e", seq=self.seq, ts=self.clock.now, **fields)

    def states(self) -> list[tuple[str, str]]:
        """(state, cause) of every state event so far."""
        return [(o.event.state, o.event.cause) for o in self.out if isinstance(o, Publish) and o.event.KIND == "state"]  # type: ignore[attr-defined]

    def logs(self) -> list[str]:
        return [o.event.message for o in self.out if isinstance(o, Publish) and isinstance(o.event, Log)]


ON_FAILURE = RestartPolicy(mode="on-failure", backoff=0.5, backoff_max=4.0, jitter=0.0, stable_after=10.0, max_restarts=3, window=60.0)


def test_a_failed_engine_is_restarted_after_a_delay_that_doubles_up_to_the_cap() -> None:
    run = Run(restart=ON_FAILURE)
    run.start()
    delays = []
    for _ in range(3):
        run.exit(1, after=0.1)
        assert run.child.state is State.BACKOFF
        delays.append(run.out[-1].event.delay)  # type: ignore[union-attr]
        due = run.tick()
        assert due is not None and due <= run.clock.now + delays[-1], "the loop is woken by the restart's time at the latest"
        run.tick(after=delays[-1] - 0.001)
        assert run.child.state is State.BACKOFF, "not before its delay"
        run.tick(after=0.001)
        assert run.child.state is State.STARTING
    assert delays == [0.5, 1.0, 2.0]
    assert len(run.procs.started) == 4
    assert ("backoff", "exit") in run.states() and ("starting", "backoff-over") in run.states()
    backoff = next(o.event for o in run.out if isinstance(o, Publish) and o.event.KIND == "state" and o.event.state == "backoff")  # type: ignore[attr-defined]
    assert backoff.ended == "exit code 1" and backoff.reason == "exit code 1: restart 1 in 0.50s"  # type: ignore[attr-defined]


def test_the_delay_stops_at_backoff_max() -> None:
    run = Run(restart=RestartPolicy(mode="always", backoff=1.0, backoff_max=3.0, jitter=0.0, max_restarts=100, window=1.0))
    run.start()
    delays = []
    for _ in range(4):
        run.exit(0, after=0.1)
        delays.append(run.child.timers.restart_at - run.clock.now)  # type: ignore[operator]
        run.tick(after=delays[-1])
    assert delays == pytest.approx([1.0, 2.0, 3.0, 3.0])


def test_a_stable_run_resets_the_delay() -> None:
    run = Run(restart=ON_FAILURE)
    run.start()
    run.exit(1, after=0.1)
    run.tick(after=0.5)
    run.exit(1, after=0.1)
    assert run.out[-1].event.delay == 1.0  # type: ignore[union-attr]
    run.tick(after=1.0)
    run.exit(1, after=10.0)  # up for stable_after
    assert run.out[-1].event.delay == 0.5  # type: ignore[union-attr]


def test_past_the_budget_the_engine_is_fatal_and_not_started_again() -> None:
    run = Run(restart=ON_FAILURE)
    run.start()
    for _ in range(3):
        run.exit(1, after=0.1)
        run.tick(after=5.0)
    run.exit(1, after=0.1)
    assert run.child.state is State.FATAL
    assert run.states()[-1] == ("fatal", "budget")
    assert "3 restart(s) within 60s (max_restarts = 3)" in run.child.reason
    assert run.tick(after=3600) is None and len(run.procs.started) == 4, "nothing more is due, nothing is started"


def test_restarts_outside_the_window_do_not_count() -> None:
    run = Run(restart=ON_FAILURE)
    run.start()
    for _ in range(6):
        run.exit(1, after=30.0)  # each after 30 s up: stable, and the window forgets the old ones
        run.tick(after=1.0)
    assert run.child.state is State.STARTING and len(run.procs.started) == 7


def test_a_clean_exit_under_on_failure_is_not_restarted() -> None:
    run = Run(restart=ON_FAILURE)
    run.start()
    run.exit(0, after=2.0)
    assert run.child.state is State.EXITED and run.states()[-1] == ("exited", "exit")
    assert run.fleet.all_final()


def test_a_stop_sends_the_stop_signal_then_sigkill_at_the_stop_timeout() -> None:
    run = Run(stop_signal="SIGINT", stop_timeout=3.0)
    proc = run.start()
    answers, out = run.fleet.stop("e")
    run.out += out
    assert answers["e"].state == "stopping" and not answers["e"].already
    assert run.procs.sent == [(proc.pid, "SIGINT")]
    run.tick(after=2.999)
    assert run.procs.sent == [(proc.pid, "SIGINT")], "no SIGKILL before the stop timeout"
    run.tick(after=0.001)
    assert run.procs.sent[-1] == (proc.pid, "SIGKILL")
    run.exit(-signal.SIGKILL, after=0.01)
    assert run.child.state is State.EXITED and run.states()[-1] == ("exited", "stopped")
    assert run.child.stopped_by_us and run.procs.forgotten == [proc.pid]
    assert run.tick(after=3600) is None, "nothing is due any more: the loop may sleep"
    assert [s for s, _ in run.states()] == ["starting", "stopping", "exited"]


def test_stop_of_an_ended_engine_says_already() -> None:
    run = Run()
    run.start()
    run.exit(0, after=0.1)
    answers, _ = run.fleet.stop("e")
    assert (answers["e"].state, answers["e"].already, answers["e"].text()) == ("exited", True, "already exited")


def test_a_process_that_survives_sigkill_makes_the_fleet_stuck_not_spinning() -> None:
    run = Run(stop_timeout=1.0)
    run.start()
    run.out += run.fleet.shutdown("test")
    run.tick(after=1.0)  # SIGKILL
    assert not run.fleet.stuck(run.clock.now)
    due = run.tick(after=KILL_WAIT)
    assert due is None, "nothing the fleet can do: it does not ask to be woken for it"
    assert run.fleet.stuck(run.clock.now + 1)


def test_an_engine_is_running_after_its_hello_or_after_a_second_up() -> None:
    run = Run()
    run.start()
    run.send(run.sdk(EngineHello, pid=101))
    assert run.child.state is State.RUNNING and run.states()[-1] == ("running", "hello")
    quiet = Run()
    quiet.start()
    quiet.tick(after=STARTED_AFTER)
    assert quiet.child.state is State.RUNNING and quiet.states()[-1] == ("running", "up")


def test_a_silent_engine_is_unresponsive_after_its_heartbeat_timeout_and_back_when_heard() -> None:
    run = Run(heartbeat_timeout=5.0)
    run.start()
    run.send(run.sdk(EngineHello, pid=101))
    run.clock.now += 4.0
    run.send(run.sdk(Heartbeat))
    run.tick(after=4.999)
    assert run.child.state is State.RUNNING, "a heartbeat 4.999 s ago is recent enough"
    run.tick(after=0.001)
    assert run.child.state is State.UNRESPONSIVE and run.states()[-1] == ("unresponsive", "silent")
    run.send(run.sdk(Heartbeat))
    assert run.child.state is State.RUNNING and run.states()[-1] == ("running", "heard")


def test_an_sdk_that_says_its_work_is_still_makes_it_unresponsive_and_restarted_when_asked() -> None:
    run = Run(heartbeat_timeout=5.0, on_unresponsive="restart", restart=ON_FAILURE)
    proc = run.start()
    run.send(run.sdk(EngineHello, pid=101))
    run.send(run.sdk(Heartbeat, idle=5.0))
    assert run.states()[-2:] == [("unresponsive", "still"), ("stopping", "unresponsive")]
    assert run.procs.sent == [(proc.pid, "SIGTERM")]
    run.exit(-signal.SIGTERM, after=0.5)
    assert run.child.state is State.BACKOFF, "restarted (forced), with the policy's delay"


def test_idle_timeout_watches_an_engine_that_only_prints() -> None:
    run = Run(idle_timeout=2.0)
    proc = run.start()
    run.tick(after=STARTED_AFTER)
    run.out += run.fleet.output(proc, "stdout", [("working", 0, run.clock.now)])
    run.tick(after=1.999)
    assert run.child.state is State.RUNNING
    run.tick(after=0.001)
    assert run.child.state is State.UNRESPONSIVE and run.states()[-1] == ("unresponsive", "quiet")
    run.out += run.fleet.output(proc, "stdout", [("again", 0, run.clock.now)])
    assert run.child.state is State.RUNNING and run.states()[-1] == ("running", "printed")
    assert [o.event.message for o in run.out if isinstance(o, Publish) and o.event.KIND == "log"] == ["working", "again"]  # type: ignore[attr-defined]


def test_the_exit_waits_for_the_last_lines_then_for_drain_grace_at_most() -> None:
    run = Run(config={"drain_grace": 2.0})
    proc = run.start()
    run.fleet.exited(proc, 0, run.clock.now)
    run.tick()
    assert run.child.state is State.STARTING, "its pipes are still open: its last lines may come"
    run.tick(after=2.0)
    assert run.child.state is State.EXITED, "drain_grace is over"


@pytest.mark.parametrize(("made_spool", "waits"), [(False, SILENT_EXIT_GRACE), (True, 2.0)])
def test_a_process_that_said_no_hello_and_made_no_spool_has_its_exit_after_a_short_grace(made_spool: bool, waits: float, tmp_path: Path) -> None:
    run = Run(config={"drain_grace": 2.0})
    run.fleet.open(run.procs, endpoint="ipc:///nowhere", spool_dir=tmp_path)
    run.start()
    assert run.child.spool is not None
    if made_spool:  # our SDK makes its spool before it says hello: its hello may be on its way
        run.child.spool.write_bytes(b"")
    run.exit(0)
    run.tick(after=waits - 0.01)
    assert run.child.state is not State.EXITED
    run.tick(after=0.02)
    assert run.child.state is State.EXITED


def test_after_its_bye_an_engine_s_exit_is_published_as_soon_as_its_pipes_close() -> None:
    run = Run(config={"drain_grace": 30.0})
    proc = run.start()
    run.send(run.sdk(EngineHello, pid=proc.pid))
    run.send(run.sdk(EngineBye, sent=1))  # (the hello)
    run.exit(0, after=0.1)
    kinds = [o.event.KIND for o in run.out if isinstance(o, Publish)]
    assert kinds[-2:] == ["exit", "state"] and run.child.state is State.EXITED
    assert not [m for m in run.logs() if "never arrived" in m or "without its final bye" in m]


def test_an_exit_of_an_earlier_process_is_not_taken_for_the_current_one() -> None:
    run = Run(restart=ON_FAILURE)
    first = run.start()
    run.exit(1, after=0.1)
    run.tick(after=0.5)
    assert run.procs.started[-1] is not first
    run.fleet.stream_closed(first, "stdout")  # late, from the first process
    run.fleet.exited(first, 1, run.clock.now)
    run.tick()
    assert run.child.state is State.STARTING and run.child.open_streams == {"stdout", "stderr"}


def test_processes_left_in_the_group_get_the_stop_signal_then_sigkill() -> None:
    run = Run(stop_timeout=4.0)
    proc = run.start()
    run.procs.groups_left.add(proc.pid)
    run.exit(0, after=0.1)
    assert run.procs.sent == [(proc.pid, "SIGTERM")]
    assert any("left processes in its group" in m for m in run.logs())
    run.tick(after=3.999)
    assert run.procs.sent == [(proc.pid, "SIGTERM")], "no SIGKILL before the stop timeout"
    run.tick(after=0.001)
    assert run.procs.sent[-1] == (proc.pid, "SIGKILL") and run.procs.forgotten == [proc.pid]


def test_a_command_that_cannot_start_is_fatal_when_not_retried_and_backs_off_when_it_is() -> None:
    run = Run()
    run.procs.fail = FileNotFoundError(2, "No such file or directory")
    run.fleet.start_all()
    run.tick()
    assert run.child.state is State.FATAL and run.states()[-1] == ("fatal", "cannot-start")
    assert run.child.spawn_error == "cannot start 'e': command not found: prog"
    retried = Run(restart=ON_FAILURE)
    retried.procs.fail = PermissionError(13, "Permission denied")
    retried.fleet.start_all()
    retried.tick()
    assert retried.child.state is State.BACKOFF


def test_an_engine_with_on_exit_stop_all_ends_the_run() -> None:
    run = Run(on_exit="stop-all")
    run.start()
    run.exit(3, after=0.1)
    assert [o for o in run.out if isinstance(o, StopAll)] == [StopAll("e ended (exit code 3; on_exit = stop-all)")]


def test_a_shutdown_stops_everything_and_starts_nothing() -> None:
    run = Run(restart=RestartPolicy(mode="always", backoff=0.1, jitter=0.0))
    proc = run.start()
    run.out += run.fleet.shutdown("down")
    run.exit(-signal.SIGTERM, after=0.1)
    assert run.child.state is State.EXITED and run.procs.sent == [(proc.pid, "SIGTERM")]
    assert run.fleet.all_final() and len(run.procs.started) == 1


def test_engines_are_added_while_the_fleet_runs_and_ended_ones_forgotten() -> None:
    run = Run()
    run.start()
    run.out += run.fleet.add(EngineSpec(name="late", command=("prog",), instances=2))
    run.tick()
    assert [p.owner for p in run.procs.started] == ["e", "late.1", "late.2"]
    with pytest.raises(ValueError, match="'late.1' is taken"):
        run.fleet.add(EngineSpec(name="late", command=("prog",), instances=2))
    with pytest.raises(ValueError, match="has not ended"):
        run.fleet.forget("late")
    run.exit(0)  # (the last started: late.2)
    run.fleet.forget("late.2")
    assert sorted(run.fleet.children) == ["e", "late.1"]
    with pytest.raises(LookupError):
        run.fleet.forget("late.2")
    with pytest.raises(ValueError, match="'late.1' is taken"):  # one instance named "late" would make `stop late` mean three
        run.fleet.add(EngineSpec(name="late", command=("prog",)))
    with pytest.raises(ValueError, match="'late.1' is taken"):  # the name of an instance of another engine
        run.fleet.add(EngineSpec(name="late.1", command=("prog",)))
    run.out += run.fleet.add(EngineSpec(name="b.1", command=("prog",), instances=2))  # b.1.1, b.1.2
    with pytest.raises(ValueError, match="'b.1.1' is taken"):  # its b.1 would be their engine's name too
        run.fleet.add(EngineSpec(name="b", command=("prog",), instances=2))


def test_a_hello_under_a_supervised_name_without_seq_is_refused() -> None:
    run = Run()
    run.start()
    with pytest.raises(RemoteProtocolError) as refused:
        run.send(EngineHello(engine="e", pid=9, host="elsewhere"))
    assert refused.value.reason == "name-taken"


def test_a_remote_engine_is_lost_when_silent_and_cannot_be_signalled() -> None:
    run = Run()
    run.send(EngineHello(engine="far", pid=7, host="h2", heartbeat=1.0, seq=1))
    far = run.fleet.children["far"]
    assert far.remote and run.states()[-1] == ("running", "attached")
    assert run.out[-2].event.KIND == "state" and run.out[-2].event.remote  # type: ignore[union-attr]  # (then the hello)
    run.tick(after=3.0)
    assert far.state is State.LOST and run.states()[-1] == ("lost", "vanished")
    answers, _ = run.fleet.stop("far")
    assert answers["far"].remote.startswith("the supervisor cannot signal it (pid 7 on h2)")
    assert run.procs.sent == []


def test_ended_engines_added_at_run_time_are_kept_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bus.supervisor.fleet.MAX_ENDED", 2)
    run = Run()
    run.start()
    run.exit(0)  # the config's own engine ended: it is kept whatever the bound (it makes the exit code)
    for k in range(4):
        run.out += run.fleet.add(EngineSpec(name=f"job{k}", command=("prog",)))
        run.tick()
        run.exit(0)
    assert sorted(run.fleet.children) == ["e", "job2", "job3"], "the oldest ended ones were forgotten"
    assert run.fleet.all_final()


def test_stop_all_stops_everything_at_once_so_nothing_due_later_in_the_tick_starts() -> None:
    clock, procs = Clock(), FakeProcesses()
    boss = EngineSpec(name="boss", command=("prog",), on_exit="stop-all")
    worker = EngineSpec(name="worker", command=("prog",), restart=RestartPolicy(mode="always", backoff=1.0, jitter=0.0))
    fleet = Fleet(SupervisorConfig(engines=(boss, worker), drain_grace=0.0), clock=clock, wall=clock)
    fleet.open(procs, endpoint="ipc:///nowhere")
    fleet.start_all()
    out, _ = fleet.tick()
    boss_proc, worker_proc = procs.started
    for proc, when in ((worker_proc, 0.0), (boss_proc, 0.5)):  # the worker ends (restart due at +1 s), then the boss
        clock.now += when
        procs.exited.add(proc.pid)
        fleet.stream_closed(proc, "stdout")
        fleet.stream_closed(proc, "stderr")
        fleet.exited(proc, 0, clock.now)
        if proc is worker_proc:
            out += fleet.tick()[0]
    clock.now += 0.5  # the boss's exit and the worker's restart are both due now: the boss's comes first
    more, _ = fleet.tick()
    assert len(procs.started) == 2, "the worker was not started again: the run is stopping"
    assert fleet.children["worker"].state is State.EXITED and fleet.all_final()
    said = [(o.event.engine, o.event.state) if isinstance(o, Publish) and o.event.KIND == "state" else type(o).__name__  # type: ignore[attr-defined]
            for o in more if not (isinstance(o, Publish) and o.event.KIND != "state")]
    assert said == [("boss", "exited"), "StopAll", ("worker", "exited")]
