"""The `bus` command as users run it: legacy scripts, errors as one line, exit codes."""

from __future__ import annotations

import json
import select
import subprocess
from pathlib import Path

import pytest
from helpers import Collector, bus, bus_result, scripted, write_config

from bus import Subscriber
from bus.runtime import local_session

LEGACY = """\
import sys
print("hello from a legacy script")
print('##PROGRESS:{"phase":"scan","pct":40}')
print('##PROGRESS:{"phase":"scan","pct":100, "detail": "all pages"}')
print("##PROGRESS:{broken", flush=True)
print("a warning on stderr", file=sys.stderr)
sys.exit(3)
"""


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of a child's stdout, or fail after `timeout` (never hang)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return proc.stdout.readline()


def one_clean_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


def test_legacy_markers_become_progress_and_other_lines_logs(runtime_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(LEGACY)
    collector = Collector()
    collector.start()
    result = bus_result("run", "--json", "--", "python", str(script))
    events = collector.finish()
    assert result.returncode == 3  # the command's own exit code
    progress = [(e.fields()["phase"], e.fields()["pct"], e.fields()["detail"]) for e in events if e.kind == "progress"]
    assert progress == [("scan", 40.0, ""), ("scan", 100.0, "all pages")]
    logs = [(e.fields()["stream"], e.fields()["message"]) for e in events if e.kind == "log"]
    assert ("stdout", "hello from a legacy script") in logs
    assert ("stdout", "##PROGRESS:{broken") in logs  # a marker we cannot read is kept as the line it was
    assert ("stderr", "a warning on stderr") in logs
    assert all(e.engine == "script" for e in events if e.kind in ("log", "progress"))
    exit_event = next(e for e in events if e.kind == "exit")
    assert exit_event.fields()["code"] == 3
    # The launcher printed the same stream as JSON lines on its stdout.
    kinds = [json.loads(line)["kind"] for line in result.stdout.splitlines()]
    assert kinds == [e.kind for e in events]


def test_run_of_a_missing_command_exits_127_and_says_why(runtime_dir: Path) -> None:
    result = bus_result("run", "--plain", "--", "no-such-command-xyz", "--flag")
    assert result.returncode == 127
    assert "cannot start 'no-such-command-xyz': command not found: no-such-command-xyz" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_run_names_the_engine_after_the_script(runtime_dir: Path, tmp_path: Path) -> None:
    result = bus_result("run", "--json", "--", "python", "-c", "print('hi')")
    assert result.returncode == 0, result.stderr
    starts = [json.loads(line) for line in result.stdout.splitlines()]
    assert starts[0]["kind"] == "sup.start" and starts[0]["engines"] == ["python"]
    named = bus_result("run", "--json", "--name", "greeter", "--", "python", "-c", "print('hi')")
    assert json.loads(named.stdout.splitlines()[0])["engines"] == ["greeter"]


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["up", "missing.toml"], 3, "bus up: missing.toml: no such file"),
        (["tail", "-k", "bogus"], 2, "bus tail: unknown kind 'bogus' for -k"),
        (["tail", "-n", "many"], 2, "bus tail: -n/--last takes a number or 'all'"),
        (["tail", "--timeout", "0.5"], 4, "bus tail: no supervisor answered"),
        (["status", "--timeout", "0.5"], 4, "bus status: no answer from a supervisor at session 'default'"),
        (["down"], 4, "bus down: no supervisor answered at session 'default'"),
        (["status", "ipc:///tmp/x/ctl"], 2, "bus status: address 'ipc:///tmp/x/ctl' is not understood"),
        (["up", "--session", "bad/name", "x.toml"], 3, "bus up: x.toml: no such file"),
        (["run", "--session", "no good", "--", "true"], 2, "bus run: session name 'no good' is not valid"),
        (["run", "--listen", "tcp://nowhere", "--", "true"], 2, "bus run: --listen 'tcp://nowhere' is not an address like tcp://0.0.0.0:7010 (a host, then a port from 0 (any free port) to 65535)"),
    ],
)
def test_user_errors_are_one_line_with_an_exit_code(runtime_dir: Path, args: list[str], code: int, words: str) -> None:
    result = bus_result(*args, timeout=30)
    assert result.returncode == code, result.stderr
    assert words in one_clean_line(result.stderr)


def test_a_bad_config_names_file_engine_and_key(runtime_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[engines.audit]\ncommand = ["python", "a.py"]\nrestrat = "always"\n')
    result = bus_result("up", str(config))
    assert result.returncode == 3
    assert one_clean_line(result.stderr) == f"bus up: {config}: engine 'audit': unknown key 'restrat'; did you mean 'restart'?"


def test_a_busy_session_is_refused_and_tcp_control_works(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"idle": scripted("--events", "5", "--hold")})
    first = bus("up", "--plain", "--listen", "tcp://127.0.0.1:0", str(config), stdout=open(tmp_path / "first.out", "w"))
    try:
        with Subscriber(timeout=10, connect_timeout=60, history=None) as sub:
            sub.wait_ready(timeout=60)
        second = bus_result("up", str(config))
        assert second.returncode == 3
        assert f"is in use by another supervisor (pid {first.pid})" in one_clean_line(second.stderr)

        info = json.loads(local_session(None).info_file.read_text())
        control = info["control"][-1]
        status = bus_result("status", "--json", control)
        assert status.returncode == 0, status.stderr
        body = json.loads(status.stdout)
        assert [e["name"] for e in body["engines"]] == ["idle"] and body["engines"][0]["state"] == "running"
        down = bus_result("down", control)
        assert down.returncode == 0, down.stderr
        first.wait(30)
    finally:
        if first.poll() is None:
            first.terminate()
            first.wait(30)
    assert first.returncode == 0


def test_tail_over_tcp_replays_the_last_20_then_follows(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"idle": scripted("--events", "40", "--hold")})
    launcher = bus("up", "--plain", "--listen", "tcp://127.0.0.1:0", str(config), stdout=open(tmp_path / "up.out", "w"))
    tail = None
    try:
        with Subscriber(timeout=10, connect_timeout=60, kinds=["log", "result"]) as sub:
            # Its result (SDK, over PULL) and its last printed line (stdout, over a pipe) come by two
            # channels, in either order: from when both are in, it holds, publishing nothing.
            seen = {"result": False, "done": False}
            while not all(seen.values()):
                event = sub.recv(timeout=60)
                seen["result"] |= event.kind == "result"
                seen["done"] |= event.kind == "log" and event.fields()["message"].startswith("scripted engine done")
            last = sub.control.request("hello")[0]["last"]
        info = json.loads(local_session(None).info_file.read_text())
        control = info["control"][-1]
        tail = bus("tail", "--json", "-n", "20", control)
        first = read_line(tail, timeout=60)  # it has replayed history, so it is subscribed
        down = bus_result("down", control)
        assert down.returncode == 0, down.stderr
        assert tail.wait(60) == 0, tail.stderr.read()  # type: ignore[union-attr]
        rest = tail.stdout.read()  # type: ignore[union-attr]  # same buffered reader as read_line
        launcher.wait(30)
    finally:
        for proc in (launcher, tail):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    lines = [json.loads(line) for line in [first, *rest.splitlines()]]
    gseqs = [d["gseq"] for d in lines]
    assert gseqs[:20] == list(range(last - 19, last + 1)), "-n 20 replays the newest twenty"
    assert gseqs == list(range(gseqs[0], gseqs[0] + len(gseqs))), "no gap between replay and live"
    assert lines[-1]["kind"] == "sup.stop"
    assert any(d["kind"] == "exit" for d in lines)


def test_a_tail_waiting_before_a_very_short_run_prints_all_of_it(runtime_dir: Path, tmp_path: Path) -> None:
    for attempt in range(5):  # the race it guards against is timing-dependent: try it several times
        out = tmp_path / f"tail{attempt}.jsonl"
        tail = bus("tail", "--json", stdout=open(out, "w"))
        # An SDK engine that says bye at once: no drain grace, the whole run lasts a blink.
        quick = "from bus.engine import Engine\nwith Engine() as eng: eng.log('quick')"
        run = bus_result("run", "--plain", "--", "python", "-c", quick)
        assert run.returncode == 0, run.stderr
        assert tail.wait(60) == 0, tail.stderr.read()  # type: ignore[union-attr]
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [d["gseq"] for d in lines] == list(range(1, len(lines) + 1))
        assert lines[0]["kind"] == "sup.start" and lines[-1]["kind"] == "sup.stop"
        assert any(d["kind"] == "log" and d["message"] == "quick" for d in lines)
