"""Mistakes a user can make get one line (what, where, how to fix) and the right
exit code, at once: no traceback, no hang. Each case below printed a traceback,
hung or answered wrongly before it was fixed."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from helpers import bus_result, free_ports, write_config


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["status", "tcp://"], 2, "address 'tcp://' is not an address like tcp://10.0.0.5:7010"),
        (["tail", "tcp://"], 2, "address 'tcp://' is not an address like"),
        (["tail", "tcp://x:99999"], 2, "address 'tcp://x:99999' is not an address like"),  # waited for ever
        (["attach", "tcp://", "--", "true"], 2, "address 'tcp://' is not an address like"),  # hung
        (["web", "tcp://", "--port", "0"], 2, "address 'tcp://' is not an address like"),  # served for ever
        (["down", "tcp://:7010"], 2, "is not an address like"),
        (["run", "--name", "bad name", "--", "true"], 2, "--name 'bad name' is not a valid engine name"),
        (["attach", "default", "-n", "bad name", "--", "true"], 2, "--name 'bad name' is not a valid engine name"),
        (["web", "--public", "--host", "nonexistent.invalid", "--port", "0"], 2, "cannot serve on nonexistent.invalid:0: no such host or address here"),
        (["run", "--stop-timeout", "-5", "--", "true"], 2, "Invalid value for '--stop-timeout'"),  # meant an immediate SIGKILL
        (["tail", "--timeout", "-1"], 2, "Invalid value for '--timeout'"),
        (["tail", "-n", "1" + "0" * 30], 2, "-n/--last must be from 0 to"),
        (["run", "--listen", "tcp://127.0.0.1:99999", "--", "true"], 2, "--listen 'tcp://127.0.0.1:99999' is not an address like tcp://0.0.0.0:7010"),
    ],
)
def test_a_bad_argument_is_one_line(runtime_dir: Path, args: list[str], code: int, words: str) -> None:
    result = bus_result(*args, timeout=30)
    assert result.returncode == code, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    if code != 2 or not result.stderr.startswith("Usage:"):  # click's own usage errors come with a usage line
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_state_dir_that_is_a_file_is_one_line(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"a": ["true"]})
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = bus_result("up", str(config), env={**_env(runtime_dir), "BUS_STATE_DIR": str(blocker)}, timeout=30)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [f"bus up: cannot create the journal {blocker}/default/journal.sqlite: Not a directory: set BUS_STATE_DIR to a writable directory, or use --no-journal"]


def test_a_damaged_journal_is_one_line(runtime_dir: Path) -> None:
    journal = runtime_dir / "state" / "default" / "journal.sqlite"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(b"this is not a database" * 100)
    for args in (["tail", "--run", "last"], ["runs"]):
        result = bus_result(*args, timeout=30)
        assert result.returncode == 3, result.stderr
        assert result.stderr.strip().splitlines() == [f"bus {args[0]}: the journal {journal} cannot be read (file is not a database): it is damaged or not a journal; move it away (the next supervisor starts a new one)"]


@pytest.mark.parametrize("taken", [0, 1, 2])
def test_listen_on_a_port_in_use_says_so_and_exits(runtime_dir: Path, tmp_path: Path, taken: int) -> None:
    """Before: with P, P+1 or P+2 in use `bus up --listen tcp://127.0.0.1:P` hung for ever, printing nothing
    (the socket made before the failing bind was never closed, so the context's term waited)."""
    config = write_config(tmp_path, {"a": ["true"]})
    with socket.socket() as holder:
        base = free_ports(3)
        holder.bind(("127.0.0.1", base + taken))
        holder.listen()
        started = time.monotonic()
        result = bus_result("up", "--listen", f"tcp://127.0.0.1:{base}", str(config), timeout=30)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines() == [f"bus up: tcp://127.0.0.1:{base + taken} is already in use: stop what holds it or choose another address"]
    assert time.monotonic() - started < 20


def test_listen_on_an_address_of_another_host_says_so(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"a": ["true"]})
    result = bus_result("up", "--listen", "tcp://192.0.2.1:7010", "--insecure", str(config), timeout=30)  # TEST-NET-1: on no host here
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "bus up: cannot bind tcp://192.0.2.1:7012: that address is not on this host (listen on one of its own addresses, or 0.0.0.0)"


def _env(runtime_dir: Path) -> dict[str, str]:
    import os

    return {**os.environ, "BUS_RUNTIME_DIR": str(runtime_dir)}
