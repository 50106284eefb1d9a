"""Fixtures: an isolated run directory per test, checked for leftover processes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import zmq

from helpers import bus_result, processes_using


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



@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """The supervisor's key directory and each client's own key pair."""
    server_dir, client_dir = tmp_path / "keys", tmp_path / "clients"
    made = bus_result("keygen", "server", "--dir", str(server_dir))
    assert made.returncode == 0, made.stderr
    for name, role in (("eng", "engines"), ("viewer", "subscribers"), ("ops", "admins"), ("feeder", "producers"), ("stranger", None)):
        assert bus_result("keygen", name, "--dir", str(client_dir)).returncode == 0
        if role:
            (server_dir / role).mkdir(exist_ok=True)
            shutil.copy(client_dir / f"{name}.key", server_dir / role)
    return {"dir": server_dir, "server": server_dir / "server.key", **{n: client_dir / f"{n}.key_secret" for n in ("eng", "viewer", "ops", "feeder", "stranger")}}
