"""Shell completion (README, "Shell completion"): click's own for commands and options, and
bus/cli/complete.py's for session names, event kinds, and engines and queues that no
supervisor is there to name (those from a running one: tests/integration/test_live_completion.py)."""

from __future__ import annotations

import socket
import time
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from bus.cli import main
from helpers import ROOT, completions


def test_the_console_script_is_bus_so_the_variable_is_BUS_COMPLETE() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"bus": "bus.cli:main"}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_gets_a_script_that_asks_bus(shell: str) -> None:
    result = CliRunner().invoke(main, prog_name="bus", env={"_BUS_COMPLETE": f"{shell}_source"})
    assert result.exit_code == 0 and result.stderr == ""
    assert f"_BUS_COMPLETE={shell}_complete" in result.stdout
    assert "_bus_completion" in result.stdout


def test_command_names_complete() -> None:
    assert completions("bus st") == ["start", "status", "stop"]
    assert set(completions("bus ")) == set(main.commands)
    assert completions("bus sub") == ["submit"]


def test_options_and_their_choices_complete() -> None:
    assert completions("bus tail --no-f") == ["--no-follow"]
    assert completions("bus up --se") == ["--session"]
    assert completions("bus stop audit --no") == ["--no-wait"]
    assert completions("bus jobs --state d") == ["done", "dead"]
    assert completions("bus tail -k pro") == ["progress"]


def test_session_names_complete_from_the_run_directory(runtime_dir: Path) -> None:
    for name, mark in (("alpha", "lock"), ("beta", "supervisor.json"), (".hidden", "lock")):
        (runtime_dir / name).mkdir()
        (runtime_dir / name / mark).touch()
    (runtime_dir / "stray").mkdir()  # no supervisor ever ran there (nor is the fixture's state/ a session)
    (runtime_dir / "afile").touch()
    (runtime_dir / "state" / "gamma").mkdir(parents=True)
    (runtime_dir / "state" / "gamma" / "journal.sqlite").touch()  # only a journal: still a session for `bus runs`
    sessions = ["alpha", "beta", "gamma"]
    for line in ("bus status ", "bus down ", "bus tail ", "bus runs ", "bus web ", "bus attach ", "bus stop audit ",
                 "bus forget crawl ", "bus jobs library ", "bus retry -a ", "bus up --session ", "bus run -S ", "bus hub --session "):
        assert completions(line) == sessions, line
    assert completions("bus up --session=a") == ["alpha"]
    assert completions("bus tail b") == ["beta"]
    assert completions("bus hub east=g") == ["east=gamma"]
    assert completions("bus submit ") == sessions  # (a queue, or an address: no supervisor runs to name queues)
    assert completions("bus tail ./runs/") == ["dir:./runs/"]  # a run directory: the shell completes the path


def test_with_no_supervisor_engines_and_queues_complete_to_nothing_at_once(runtime_dir: Path) -> None:
    for line in ("bus stop ", "bus restart au", "bus forget ", "bus tail -e ", "bus jobs ", "bus tail nosuch -e ", "bus tail bad://x -e "):
        assert _quick(line) == [], line


def test_a_session_whose_supervisor_died_or_a_silent_port_completes_to_nothing_within_the_bound(runtime_dir: Path) -> None:
    stale = runtime_dir / "default"
    stale.mkdir()
    (stale / "lock").touch()
    (stale / "ctl").touch()  # left by a killed supervisor: it looks bound, and nobody answers
    assert _quick("bus stop ") == []
    assert _quick("bus submit default ") == []
    assert _quick("bus submit ") == ["default"]  # (no queues from it, but the session is there)
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        assert _quick(f"bus tail tcp://127.0.0.1:{port} -e ") == []


def _quick(line: str) -> list[str]:
    """Completions that must not hang a prompt: within 2 s (the supervisor gets 0.5 s)."""
    start = time.monotonic()
    offered = completions(line)
    assert time.monotonic() - start < 2.0, f"{line!r} took {time.monotonic() - start:.1f}s"
    return offered
