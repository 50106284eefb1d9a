"""`bus tail` and subscribers when their supervisor goes away, on one machine.

Before: after its supervisor was SIGKILLed `bus tail` waited for ever, silently
(30 s observed), and when a new run started in the session it went on into it
and exited 0 although the first run was cut short. With an engine key `bus tail`
and `bus down` said "no supervisor answered" (exit 4) instead of naming the key (5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from helpers import Watcher, bus, bus_result, finish, free_ports, running, scripted, write_config

from bus import Subscriber
from bus.follow import SupervisorGone
from bus.runtime import local_session


def supervisor_pid() -> int:
    return int(json.loads(local_session(None).info_file.read_text())["pid"])


def test_a_tail_whose_supervisor_is_killed_says_so_at_once(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"work": scripted("--events", "100000", "--pace", "1000", "--seed", "2")})  # about 100 events/s
    launcher = bus("up", "--quiet", str(config))
    tail = bus("tail", "--json", stdout=open(tmp_path / "tail.jsonl", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60, kinds=["progress"]) as sub:
            Watcher(sub).wait(lambda e: e.kind == "progress")
            pid = supervisor_pid()
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            launcher.wait(30)
            try:
                while sub.recv(timeout=30) is not None:
                    pass
                raise AssertionError("the subscriber saw an end that never was")
            except SupervisorGone as exc:
                assert f"pid {pid} no longer runs: killed?" in str(exc) and "its journal ends after event " in str(exc), exc
        _, err = tail.communicate(timeout=30)
        assert tail.returncode == 4, err
        assert time.monotonic() - killed < 10, "it should know at once: the pid is gone"
        said = err.strip().splitlines()[-1]
        assert said.startswith("bus tail: the supervisor of run ") and f"is gone (pid {pid} no longer runs: killed?): its journal ends after event " in said, said
        got = [json.loads(line)["gseq"] for line in (tmp_path / "tail.jsonl").read_text().splitlines()]
        after = int(said.split("ends after event ")[1].split(";")[0])
        assert got == list(range(1, after + 1))  # everything the journal has, once, in order
    finally:
        for proc in (launcher, tail):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_tail_goes_on_into_the_next_run_saying_the_first_was_cut_short(runtime_dir: Path, tmp_path: Path) -> None:
    first = write_config(tmp_path, {"work": scripted("--events", "100000", "--pace", "1000", "--seed", "2")})
    (tmp_path / "second").mkdir()
    second = write_config(tmp_path / "second", {"work": scripted("--events", "50", "--seed", "3")})
    launcher = bus("up", "--quiet", str(first))
    tail = bus("tail", "--json", stdout=open(tmp_path / "tail.jsonl", "w"))
    relaunched = None
    try:
        with Subscriber(timeout=10, connect_timeout=60, kinds=["progress"]) as sub:
            Watcher(sub).wait(lambda e: e.kind == "progress")
        # Killed and replaced at once: the session's lock is free for the next supervisor.
        subprocess.run(["sh", "-c", f"kill -9 {supervisor_pid()}"], check=True)
        launcher.wait(30)
        relaunched = bus("up", "--quiet", str(second))
        assert finish(relaunched) == 0
        _, err = tail.communicate(timeout=60)
        events = [json.loads(line) for line in (tmp_path / "tail.jsonl").read_text().splitlines()]
        runs = [e["run"] for e in events if e["kind"] == "sup.start"]
        if tail.returncode == 4:  # it saw the first supervisor dead before the second one started: said so, also fine
            assert "is gone" in err and len(runs) == 1, err
            return
        assert tail.returncode == 1, err
        assert len(runs) == 2 and events[-1]["kind"] == "sup.stop"
        assert f"bus tail: run {runs[0]} ended without its end for us (its supervisor went away after event " in err, err
        assert f"bus tail: run {runs[0]} ended without its end for us after event " in err.strip().splitlines()[-1]
    finally:
        for proc in (launcher, tail, relaunched):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_an_engine_key_is_refused_for_tail_and_down_by_name(runtime_dir: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    base = free_ports(3)
    address = f"tcp://127.0.0.1:{base}"
    config = write_config(tmp_path, {"idle": scripted("--events", "1", "--hold")})
    with running("up", "--plain", "--listen", address, "--keys", str(keys["dir"]), str(config), stdout=open(tmp_path / "up.out", "w")):
        with Subscriber(timeout=10, connect_timeout=60, history=None) as sub:
            sub.wait_ready(timeout=60)
        as_engine = ["--server-key", str(keys["server"]), "--key", str(keys["eng"])]
        for args in (["tail", address, "-n", "0"], ["down", address]):
            result = bus_result(*args, *as_engine, timeout=60)
            assert result.returncode == 5, (args, result.stderr)
            assert "refused key 'eng'" in result.stderr, result.stderr
