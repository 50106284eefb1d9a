"""`bus up Procfile` as a user coming from foreman or honcho runs it: .env, -c, $PORT, shell commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import bus_result

PROCFILE = """\
# A Procfile as foreman reads it: comments, blank lines, shell commands.

web: python -c "import os; print('web', os.environ['BUS_ENGINE'], os.environ['PORT'], os.environ['GREETING'])"

# not run (-c clock=0), but its index still counts for the next one's $PORT
clock: python -c "raise SystemExit('clock must not run')"
   # quoting and references as the shell does them: $GREETING and $PORT expanded, '$PORT' kept
worker: echo "worker $BUS_ENGINE: $GREETING" 'literal $PORT' port=$PORT secret=$SECRET
"""

DOTENV = """\
# development settings
export GREETING="hello, world"
SECRET='s3cr3t #not a comment'
"""


def logs_of(stdout: str) -> dict[str, list[str]]:
    """The stdout lines each instance printed, from `bus up --json`."""
    lines: dict[str, list[str]] = {}
    for event in map(json.loads, stdout.splitlines()):
        if event["kind"] == "log" and event["stream"] == "stdout":
            lines.setdefault(event["engine"], []).append(event["message"])
    return lines


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PORT", raising=False)
    (tmp_path / "Procfile").write_text(PROCFILE)
    (tmp_path / ".env").write_text(DOTENV)
    return tmp_path


def test_each_instance_runs_by_the_shell_with_the_env_file_and_foremans_port(runtime_dir: Path, project: Path) -> None:
    result = bus_result("up", "--json", "-c", "web=2,clock=0", "--concurrency", "worker=2", str(project / "Procfile"))
    assert result.returncode == 0, result.stderr
    assert logs_of(result.stdout) == {
        "web.1": ["web web.1 5000 hello, world"],
        "web.2": ["web web.2 5001 hello, world"],
        "worker.1": ["worker worker.1: hello, world literal $PORT port=5200 secret=s3cr3t #not a comment"],
        "worker.2": ["worker worker.2: hello, world literal $PORT port=5201 secret=s3cr3t #not a comment"],
    }


def test_env_file_and_its_port_base(runtime_dir: Path, project: Path) -> None:
    (project / "staging.env").write_text('PORT=7000\nGREETING="from staging"\n')
    result = bus_result("up", "--json", "-c", "clock=0", "--env-file", "staging.env", "Procfile", cwd=project)
    assert result.returncode == 0, result.stderr
    assert logs_of(result.stdout) == {
        "web": ["web web 7000 from staging"],  # one instance: named web, $PORT the base
        "worker": ["worker worker: from staging literal $PORT port=7200 secret="],  # in place of .env: no SECRET
    }


def one_clean_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    return lines[0]


def test_a_bad_line_is_one_line_naming_file_line_and_fix(runtime_dir: Path, project: Path) -> None:
    procfile = project / "Procfile"
    procfile.write_text(PROCFILE + "\nbeat python beat.py\n")
    result = bus_result("up", str(procfile), timeout=30)
    assert result.returncode == 3
    assert one_clean_line(result.stderr) == (
        f"bus up: {procfile}:10: 'beat python beat.py' is not a 'name: command' line (a name of letters, digits, '_' and '-', "
        "a colon, then the command): write it like 'web: python app.py', or begin it with # to comment it out"
    )


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["--env-file", "nope.env"], 3, "bus up: nope.env: no such env file: create it (KEY=VALUE lines), or name another with --env-file"),
        (["-c", "wbe=2"], 2, "bus up: -c/--concurrency wbe=...: {procfile} has no process 'wbe'; did you mean 'web'?"),
        (["-c", "web"], 2, "bus up: -c/--concurrency 'web': give NAME=N with N from 0 to 1000, e.g. -c web=2,worker=3"),
    ],
)
def test_what_cannot_run_is_one_line(runtime_dir: Path, project: Path, args: list[str], code: int, words: str) -> None:
    procfile = project / "Procfile"
    result = bus_result("up", *args, str(procfile), cwd=project, timeout=30)
    assert result.returncode == code, result.stderr
    assert one_clean_line(result.stderr) == words.format(procfile=procfile)
