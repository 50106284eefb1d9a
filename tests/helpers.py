"""Helpers for tests: the real `bus` command, configs of test engines, process checks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from bus import Subscriber
from bus.protocol import AnyEvent

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


def write_config(directory: Path, engines: dict[str, list[str]], **supervisor: Any) -> Path:
    """A TOML config running each command in tests/engines."""
    lines = []
    if supervisor:
        lines.append("[supervisor]")
        lines += [f"{key} = {value!r}" for key, value in supervisor.items()]
    for name, command in engines.items():
        quoted = ", ".join(f'"{part}"' for part in command)
        lines += [f"[engines.{name}]", f"command = [{quoted}]", f'cwd = "{ENGINES}"', 'env = { BUS_SNDHWM = "100000" }']
    path = directory / "bus.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


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
    the run ends. `until(event)` returning True sets `reached`."""

    def __init__(self, until: Callable[[AnyEvent], bool] | None = None, **options: Any) -> None:
        super().__init__(daemon=True)
        self.events: list[AnyEvent] = []
        self.lost: list[tuple[int, int]] = []
        self.error: BaseException | None = None
        self.until = until
        self.reached = threading.Event()
        self.ready = threading.Event()
        self.options = {"timeout": 10, "connect_timeout": 60, **options}

    def run(self) -> None:
        try:
            with Subscriber(**self.options) as sub:
                self.ready.set()
                for event in sub:
                    self.events.append(event)
                    if self.until is not None and self.until(event):
                        self.reached.set()
                self.lost = sub.lost
        except BaseException as exc:  # reported by finish(), not lost in the thread
            self.error = exc
        finally:
            self.ready.set()

    def finish(self, timeout: float = 60) -> list[AnyEvent]:
        self.join(timeout)
        assert not self.is_alive(), "the subscriber did not see the end of the run"
        assert self.error is None, f"subscriber failed: {self.error!r}"
        assert self.lost == [], f"events lost: {self.lost}"
        return self.events
