"""Supervising like a process manager: trees that ignore SIGTERM, a SIGKILLed
supervisor, crashes, crash loops, hangs, instances, and the control commands.
Real processes throughout; the runtime_dir fixture fails a test that leaves one."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from pathlib import Path

from helpers import ENGINES, Collector, Watcher, alive, bus, bus_result, finish, is_state, running, scripted, write_config

from bus import Subscriber
from bus.runtime import local_session

sys.path.insert(0, str(ENGINES))
from scripted import script  # noqa: E402

TREE = [sys.executable, str(ENGINES / "tree.py")]


def tree_pids(watch: Watcher, engines: dict[str, int]) -> list[int]:
    """Pids of each engine and its grandchildren (engine -> how many), from the lines they print."""

    def lines(engine: str) -> list:
        return [e for e in watch.events if e.kind == "log" and e.engine == engine and e.fields()["message"].split()[0] in ("engine", "grandchild")]

    watch.until(lambda: all(len(lines(name)) >= 1 + count for name, count in engines.items()))
    return [int(e.fields()["message"].split()[1]) for name in engines for e in lines(name)]


def test_bus_down_takes_down_a_tree_that_ignores_sigterm(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tree": {"command": [*TREE, "--grandchildren", "2"], "stop_timeout": 1}})
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    with Subscriber(timeout=10, connect_timeout=60) as sub:
        watch = Watcher(sub)
        pids = tree_pids(watch, {"tree": 2})
        assert all(alive(pid) for pid in pids)
        down = bus_result("down")
        assert down.returncode == 0, down.stderr
        assert not [pid for pid in pids if alive(pid)], "a process of the tree survived bus down"
        events = watch.rest()
    assert finish(launcher) == 0
    stopping = next(e for e in events if e.kind == "state" and e.fields()["state"] == "stopping")
    assert events[-1].kind == "sup.stop"
    assert events[-1].ts - stopping.ts <= 1 + 1.0, "gone within stop_timeout + 1 s"
    exit_event = next(e for e in events if e.kind == "exit")
    assert exit_event.fields()["signame"] == "SIGKILL"


def test_a_sigkilled_supervisor_takes_its_engines_and_grandchildren_along(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"a": [*TREE, "--grandchildren", "2", "--sdk"], "b": [*TREE, "--grandchildren", "1"]})
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    with Subscriber(timeout=10, connect_timeout=60) as sub:
        pids = tree_pids(Watcher(sub), {"a": 2, "b": 1})
    pids.append(json.loads(local_session(None).info_file.read_text())["watchdog"])  # it must end too
    handles = {os.pidfd_open(pid): pid for pid in pids}  # readable once the process has ended
    try:
        os.kill(launcher.pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        waiting = set(handles)
        while waiting and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(list(waiting), [], [], left)
            waiting -= set(ready)
        assert not waiting, f"still running 2 s after kill -9: {[(handles[h], _describe(handles[h])) for h in waiting]}"
        launcher.wait(30)
    finally:
        for handle in handles:
            os.close(handle)


def _describe(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f"state {stat[0]} ppid {stat[1]} pgid {stat[2]}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "gone"


def test_an_engine_killed_mid_stream_loses_nothing_and_is_restarted(runtime_dir: Path, tmp_path: Path) -> None:
    once = tmp_path / "killed-once"
    # Killed right after a 200 KB screenshot (step 300), when the most is still in flight.
    command = scripted("--seed", "4", "--events", "400", "--shots", "8", "--kill-self-after", "301", "--kill-once", str(once))
    config = write_config(tmp_path, {"doomed": {"command": command, "restart": "on-failure", "backoff": 0.1}})
    collector = Collector()
    collector.start()
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    assert finish(launcher, 60) == 0  # the restarted run finished well
    events = [e for e in collector.finish() if e.engine == "doomed"]
    hellos = [i for i, e in enumerate(events) if e.kind == "hello"]
    assert len(hellos) == 2
    first, second = events[: hellos[1]], events[hellos[1] :]
    steps = script(4, 400, 8)
    assert steps[300][0] == "screenshot" and len(steps[300][1]["data"]) == 200_000
    sent = [e for e in first if e.seq is not None]
    assert [e.seq for e in sent] == list(range(1, 303)), "hello and all 301 steps it sent before SIGKILL"
    assert [bytes(e.fields()["data"]) for e in sent if e.kind == "screenshot"] == [kw["data"] for m, kw in steps[:301] if m == "screenshot"]
    exit_event = next(e for e in first if e.kind == "exit")
    assert exit_event.fields()["signame"] == "SIGKILL" and first.index(exit_event) > first.index(sent[-1])
    states = [e.fields()["state"] for e in first if e.kind == "state" and first.index(e) > first.index(exit_event)]
    assert states[:2] == ["backoff", "starting"]  # restarted per its policy
    assert [e.seq for e in second if e.seq is not None] == list(range(1, len(steps) + 3))
    assert next(e for e in second if e.kind == "exit").fields()["code"] == 0


def test_a_crash_loop_backs_off_and_ends_fatal(runtime_dir: Path, tmp_path: Path) -> None:
    crashy = {"command": [sys.executable, "-c", "import sys; sys.exit(3)"], "restart": "on-failure", "backoff": 0.2, "backoff_jitter": 0.1, "max_restarts": 3, "restart_window": 60}
    config = write_config(tmp_path, {"crashy": crashy, "idle": scripted("--hold")})
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60) as sub:
            watch = Watcher(sub)
            fatal = watch.wait(is_state("crashy", "fatal"))
            status = json.loads(bus_result("status", "--json").stdout)
            assert bus_result("down").returncode == 0
            events = watch.rest()
    finally:
        finish(launcher)
    assert "3 restart(s) within 60s (max_restarts = 3)" in fatal.fields()["reason"]
    crashy_status = next(e for e in status["engines"] if e["name"] == "crashy")
    assert (crashy_status["state"], crashy_status["restarts"], crashy_status["spawns"]) == ("fatal", 3, 4)
    mine = [e for e in events if e.engine == "crashy"]
    delays = [e.fields()["delay"] for e in mine if e.kind == "state" and e.fields()["state"] == "backoff"]
    assert len(delays) == 3 and delays == sorted(delays)
    for k, delay in enumerate(delays):
        assert 0.9 * 0.2 * 2**k <= delay <= 1.1 * 0.2 * 2**k
    exits = [e.ts for e in mine if e.kind == "exit"]
    assert len(exits) == 4, "one first run and three restarts, no more"
    for k in range(3):
        assert exits[k + 1] - exits[k] >= delays[k], "no restart before its delay: no storm"


def test_a_hung_engine_is_reported_unresponsive_and_can_be_restarted(runtime_dir: Path, tmp_path: Path) -> None:
    hung = {"command": [*TREE, "--grandchildren", "0", "--sdk"], "heartbeat_timeout": 1}
    config = write_config(tmp_path, {"sleepy": hung, "stuck": {**hung, "on_unresponsive": "restart", "stop_timeout": 0.5}})
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60) as sub:
            watch = Watcher(sub)
            sleepy = watch.wait(is_state("sleepy", "running")).fields()["pid"]
            stuck = watch.wait(is_state("stuck", "running")).fields()["pid"]
            frozen = watch.mark()
            os.kill(sleepy, signal.SIGSTOP)  # alive, but silent: no heartbeats
            os.kill(stuck, signal.SIGSTOP)
            reported = watch.wait(is_state("sleepy", "unresponsive"), since=frozen)
            assert "heartbeat_timeout = 1" in reported.fields()["reason"]
            thawed = watch.mark()
            os.kill(sleepy, signal.SIGCONT)
            back = watch.wait(is_state("sleepy", "running"), since=thawed)
            assert back.fields()["reason"] == "heard from it again"
            restarted = watch.wait(is_state("stuck", "running"), since=frozen)
            assert restarted.fields()["pid"] != stuck and restarted.fields()["restarts"] == 1
            assert bus_result("down").returncode == 0
            events = watch.rest()
    finally:
        finish(launcher)
    stuck_states = [e.fields()["state"] for e in events[frozen:] if e.kind == "state" and e.engine == "stuck"]
    assert stuck_states[:6] == ["unresponsive", "stopping", "backoff", "starting", "running", "stopping"]
    stuck_exit = next(e for e in events[frozen:] if e.kind == "exit" and e.engine == "stuck")
    assert stuck_exit.fields()["signame"] == "SIGKILL"  # a frozen process ignores its stop signal


def test_instances_run_as_tagged_copies(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"many": {"command": scripted("--events", "5"), "instances": 10}})
    collector = Collector()
    collector.start()
    assert bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w")).wait(60) == 0
    events = collector.finish()
    names = [f"many.{k}" for k in range(1, 11)]
    assert events[0].fields()["engines"] == names
    hellos = {e.engine: e.fields()["pid"] for e in events if e.kind == "hello"}
    assert sorted(hellos) == sorted(names) and len(set(hellos.values())) == 10
    for name in names:
        mine = [e for e in events if e.engine == name]
        assert [e.seq for e in mine if e.seq is not None] == list(range(1, 5 + 6))
        k = name.split(".")[1]
        assert any(e.kind == "log" and e.fields()["message"].endswith(f"instance {k}") for e in mine)
    assert {e.engine for e in events if e.engine} == set(names)


def control_run(address: str | None, config: Path, tmp_path: Path) -> None:
    """restart, stop, status, start and down through `address` (None: the local session)."""
    at = [address] if address else []
    with Subscriber(timeout=10, connect_timeout=60) as sub:
        watch = Watcher(sub)
        old = watch.wait(is_state("worker.1", "running")).fields()["pid"]
        watch.wait(is_state("worker.2", "running"))
    restart = bus_result("restart", "worker.1", *at)
    assert restart.returncode == 0, restart.stderr
    assert restart.stdout.startswith("worker.1: running (pid ") and f"(pid {old})" not in restart.stdout
    stop = bus_result("stop", "worker", *at)
    assert stop.returncode == 0, stop.stderr
    assert [line.split(":")[0:2] for line in stop.stdout.splitlines()] == [["worker.1", " exited (exit code 143"], ["worker.2", " exited (exit code 143"]]
    again = bus_result("stop", "worker.1", "--timeout", "60", *at, timeout=10)  # nothing to wait for: at once
    assert (again.returncode, again.stdout) == (0, "worker.1: already exited\n")
    status = json.loads(bus_result("status", "--json", *at).stdout)
    assert {e["name"]: e["state"] for e in status["engines"]} == {"worker.1": "exited", "worker.2": "exited", "other": "running"}
    assert next(e for e in status["engines"] if e["name"] == "worker.1")["spawns"] == 2
    start = bus_result("start", "worker.2", *at)
    assert start.returncode == 0 and start.stdout.startswith("worker.2: running (pid "), start.stdout
    unknown = bus_result("stop", "nosuch", *at)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "bus stop: no engine or instance 'nosuch'; known: worker.1, worker.2, other"
    down = bus_result("down", *at)
    assert down.returncode == 0, down.stderr


def test_control_commands_locally(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"worker": {"command": scripted("--events", "3", "--hold"), "instances": 2}, "other": scripted("--hold")})
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    try:
        control_run(None, config, tmp_path)
    finally:
        assert finish(launcher) == 0


def test_control_commands_over_tcp(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"worker": {"command": scripted("--events", "3", "--hold"), "instances": 2}, "other": scripted("--hold")})
    launcher = bus("up", "--plain", "--listen", "tcp://127.0.0.1:0", str(config), stdout=open(tmp_path / "up.out", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60, history=None) as sub:
            sub.wait_ready(timeout=60)
        info = json.loads(local_session(None).info_file.read_text())
        control_run(info["control"][-1], config, tmp_path)
    finally:
        assert finish(launcher) == 0


def test_an_engine_marked_stop_all_ends_the_run_when_it_ends(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"main": {"command": scripted("--events", "20"), "on_exit": "stop-all"}, "helper": scripted("--hold")})
    collector = Collector()
    collector.start()
    launcher = bus("up", "--plain", str(config), stdout=open(tmp_path / "up.out", "w"))
    assert finish(launcher, 60) == 0  # main exited 0; the helper was stopped, which is not a failure
    events = collector.finish()
    helper_states = [e.fields() for e in events if e.kind == "state" and e.engine == "helper"]
    stopping = next(f for f in helper_states if f["state"] == "stopping")
    assert stopping["reason"] == "main ended (exit code 0; on_exit = stop-all)"
    assert helper_states[-1]["state"] == "exited"
    assert events[-1].fields() == {"code": 0, "reason": "main ended (exit code 0; on_exit = stop-all)"}


def test_the_supervisor_s_threads_do_not_grow_with_its_engines(runtime_dir: Path, tmp_path: Path) -> None:
    """Before: three helper threads per engine (stdout, stderr, a waiter): 10,000 engines meant 30,000
    threads, 121 s to start against 2.7 s for 1,000. Now one pump thread reads them all."""
    config = write_config(tmp_path, {"idle": {"command": ["sh", "-c", "exec sleep 1000"], "instances": 60}})
    launcher = bus("up", "--quiet", str(config))
    try:
        with Subscriber(timeout=10, connect_timeout=60, kinds=["state"]) as sub:
            running: set[str] = set()
            while len(running) < 60:
                event = sub.recv(timeout=30)
                assert event is not None
                if event.fields()["state"] == "running":  # type: ignore[union-attr]
                    running.add(event.engine)
            pid = json.loads(local_session(None).info_file.read_text())["pid"]
            threads = int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Threads:")))
        assert threads < 20, f"{threads} threads for 60 engines"
        assert bus_result("down").returncode == 0
        assert launcher.wait(60) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_start_of_an_engine_already_stopping_answers_at_once(runtime_dir: Path, tmp_path: Path) -> None:
    """`bus start` of an engine on its way down says so and returns: there is nothing to wait for."""
    config = write_config(tmp_path, {"stubborn": {"command": [*TREE, "--grandchildren", "0"], "stop_timeout": 3}})
    with running("up", "--plain", "--keep", str(config), stdout=open(tmp_path / "up.out", "w")):
        with Subscriber(timeout=10, connect_timeout=60) as sub:
            Watcher(sub).wait(is_state("stubborn", "running"))
        stop = bus_result("stop", "--no-wait", "stubborn")
        assert (stop.returncode, stop.stdout) == (0, "stubborn: stopping\n"), stop.stderr
        start = bus_result("start", "stubborn", "--timeout", "20")  # it ignores SIGTERM: stopping for 3 s yet
        assert (start.returncode, start.stdout) == (0, "stubborn: already stopping\n"), start.stderr
