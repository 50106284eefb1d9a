"""Helpers for tests: the real `bus` command, configs of test engines, process checks."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from bus import Subscriber
from bus.protocol import AnyEvent
from bus.runtime import HAS_IPC, live_info, local_session

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ROOT / "tests" / "engines"
EXAMPLES = ROOT / "examples"


def processes_using(runtime: Path) -> list[int]:
    """Live processes whose environment names this test's run directory."""
    needle = f"BUS_RUNTIME_DIR={runtime}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def bus(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start the real `bus` command (as `python -m bus`) with the test's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "bus", *args],
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=kwargs.pop("stderr", subprocess.PIPE),
        text=True,
        cwd=kwargs.pop("cwd", ROOT),
        **kwargs,
    )


def bus_result(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = bus(*args, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"bus {' '.join(args)} did not finish in {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def write_config(directory: Path, engines: dict[str, list[str] | dict[str, Any]], **supervisor: Any) -> Path:
    """A TOML config running commands in tests/engines. An engine is its command,
    or a dict with "command" and other engine keys (restart, instances, ...)."""
    lines = []
    if supervisor:
        lines.append("[supervisor]")
        lines += [f"{key} = {_toml(value)}" for key, value in supervisor.items()]
    for name, entry in engines.items():
        keys = dict(entry) if isinstance(entry, dict) else {"command": entry}
        keys.setdefault("cwd", str(ENGINES))
        keys.setdefault("env", {"BUS_SNDHWM": "100000"})
        lines.append(f'[engines."{name}"]')
        lines += [f"{key} = {_toml(value)}" for key, value in keys.items()]
    path = directory / "bus.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def scripted(*args: str) -> list[str]:
    return [sys.executable, str(ENGINES / "scripted.py"), *args]


def results_from(names: set[str]) -> Callable[[AnyEvent], bool]:
    """A Collector `until`: true once every engine in `names` has sent its result
    (so each is past its SDK setup and its script)."""
    seen: set[str] = set()

    def until(event: AnyEvent) -> bool:
        if event.kind == "result":
            seen.add(event.engine)
        return seen >= names

    return until


class Collector(threading.Thread):
    """Reads a Subscriber in its own thread (its sockets live and die there) until
    the run ends. `until(event)` returning True sets `reached`. With `hold`, it
    subscribes, sets `subscribed`, then reads nothing until `hold` is set: a
    stalled subscriber."""

    def __init__(self, until: Callable[[AnyEvent], bool] | None = None, *, hold: threading.Event | None = None, **options: Any) -> None:
        super().__init__(daemon=True)
        self.events: list[AnyEvent] = []
        self.arrivals: list[float] = []  # time.time() at which each event was handed out
        self.lost: list[tuple[int, int | None]] = []
        self.refills = 0
        self.error: BaseException | None = None
        self.until = until
        self.hold = hold
        self.reached = threading.Event()
        self.ready = threading.Event()
        self.subscribed = threading.Event()
        self.options = {"timeout": 10, "connect_timeout": 60, **options}

    def run(self) -> None:
        try:
            with Subscriber(**self.options) as sub:
                if self.hold is not None:
                    sub.wait_ready(timeout=60)  # welcomed: from now on the publisher queues for us, then drops
                    self.subscribed.set()
                    assert self.hold.wait(120), "never released"
                self.ready.set()
                for event in sub:
                    self.events.append(event)
                    self.arrivals.append(time.time())
                    if self.until is not None and self.until(event):
                        self.reached.set()
                self.lost, self.refills = sub.lost, sub.refills
        except BaseException as exc:  # reported by finish(), not lost in the thread
            self.error = exc
        finally:
            self.ready.set()
            self.subscribed.set()

    def finish(self, timeout: float = 60) -> list[AnyEvent]:
        self.join(timeout)
        assert not self.is_alive(), "the subscriber did not see the end of the run"
        assert self.error is None, f"subscriber failed: {self.error!r}"
        assert self.lost == [], f"events lost: {self.lost}"
        return self.events


def supervisor_memory(pid: int) -> tuple[int, int]:
    """(RSS now, peak RSS) of a process, in bytes (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


class Watcher:
    """Reads a Subscriber and keeps every event, so a wait can be satisfied by
    an event that came while waiting for another one."""

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.events: list[AnyEvent] = []

    def mark(self) -> int:
        """Where a later `wait(since=...)` should start looking."""
        return len(self.events)

    def until(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        """Read events until `condition()` holds; fails if the run ends or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            assert left > 0, f"not so within {timeout}s"
            event = self.sub.recv(timeout=left)
            assert event is not None, "the run ended first"
            self.events.append(event)

    def wait(self, wanted: Callable[[AnyEvent], bool], *, since: int = 0, timeout: float = 60) -> AnyEvent:
        """The first event from `since` on that `wanted` accepts (one already read counts)."""
        found: list[AnyEvent] = []
        at = since  # (each event is looked at once: a wait through 30,000 events is not quadratic)

        def hit() -> bool:
            nonlocal at
            while not found and at < len(self.events):
                if wanted(self.events[at]):
                    found.append(self.events[at])
                at += 1
            return bool(found)

        self.until(hit, timeout)
        return found[0]

    def rest(self) -> list[AnyEvent]:
        """Every event of the run: what was read so far and the rest, to sup.stop."""
        self.events.extend(self.sub)
        return self.events


def is_state(engine: str, state: str) -> Callable[[AnyEvent], bool]:
    return lambda e: e.kind == "state" and e.engine == engine and e.fields()["state"] == state  # type: ignore[union-attr]


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextmanager
def running(*args: str, **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """The real `bus` command (`up --keep ...`) for the block; at its end it is brought down
    (`bus down`, exit 0, both checked), and killed if a check failed on the way."""
    launcher = bus(*args, **kwargs)
    try:
        yield launcher
        assert bus_result("down").returncode == 0
        assert finish(launcher) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def finish(launcher: subprocess.Popen[str], timeout: float = 30) -> int:
    """Wait for a launcher; if it is still running (a test failed half way),
    stop it as a user would (SIGTERM, then SIGKILL) so nothing is left behind."""
    try:
        return launcher.wait(timeout)
    except subprocess.TimeoutExpired:
        launcher.terminate()
        try:
            launcher.wait(timeout)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
        raise AssertionError(f"the launcher was still running after {timeout}s") from None


def free_ports(count: int) -> int:
    """A port P with P .. P+count-1 free just now (for --listen, which takes three in a row)."""
    import socket

    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for offset in range(count):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise AssertionError(f"no {count} free ports in a row")


def completions(line: str, **env: str) -> list[str]:
    """What `bus` offers at Tab after `line` (a trailing space starts a new word), through
    click's own completion in its test runner, as bash asks for it: the values, a type other
    than plain written before them ("dir:./runs/"). Checks that nothing else was printed."""
    from click.testing import CliRunner

    from bus.cli import main

    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    result = CliRunner().invoke(main, prog_name="bus", env={"_BUS_COMPLETE": "bash_complete", "COMP_WORDS": line, "COMP_CWORD": str(cword), **env})
    assert result.exit_code == 0 and result.stderr == "", f"exit {result.exit_code}, stderr {result.stderr!r}, {result.exception!r}"
    rows = [row.split(",", 1) for row in result.stdout.splitlines() if row]  # (nothing offered: one empty line)
    return [value if kind == "plain" else f"{kind}:{value}" for kind, value in rows]


def local_endpoint(role: str, session: str | None = None, *, wait: float = 30.0) -> str:
    """The local supervisor's `role` endpoint (ctl, pub, pull), as a peer that connects to it
    by hand needs it: its ipc file, or without ipc (BUS_LOCAL_TCP=1, Windows) the 127.0.0.1
    port supervisor.json lists, waiting up to `wait` seconds for a live supervisor to write it."""
    where = local_session(session)
    if HAS_IPC:
        return where.ipc(role)
    info = live_info(where, wait)
    assert info is not None, f"no live supervisor wrote {where.dir}/supervisor.json within {wait} s"
    return info["control" if role == "ctl" else role][0]


def start_web(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`bus web --port 0`, and the URL it prints once it serves."""
    proc = bus("web", "--port", "0", *args)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        first = lines.get(timeout=30)
    except queue.Empty:
        proc.kill()
        raise AssertionError(f"bus web printed no URL in 30 s: {proc.stderr.read()}")  # type: ignore[union-attr]
    assert first.startswith("bus web: serving http://127.0.0.1:"), first
    return proc, first.split()[3]


def stop_web(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("bus web did not stop within 15 s of SIGTERM") from None
