"""Helpers for tests: the real `bus` command, configs of test engines, process checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
