"""Fixtures: an isolated run directory per test, checked for leftover processes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import zmq

from helpers import processes_using


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short private BUS_RUNTIME_DIR (ipc paths must stay under ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bt"))
    monkeypatch.setenv("BUS_RUNTIME_DIR", str(path))
    monkeypatch.setenv("BUS_STATE_DIR", str(path / "state"))  # journals, on disk
    monkeypatch.delenv("BUS_SESSION", raising=False)
    monkeypatch.delenv("BUS_ENDPOINT", raising=False)
    monkeypatch.delenv("BUS_ENGINE", raising=False)
    yield path
    left = processes_using(path)
    described = [f"{pid} {_cmdline(pid)}" for pid in left]
    for pid in left:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    shutil.rmtree(path, ignore_errors=True)
    assert not left, f"processes left running after the test: {described}"


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:150]
    except OSError:
        return "(gone)"


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)

