"""Procfiles and .env files, read as foreman and honcho read them (supervisor/procfile.py, envfile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.errors import UsageError
from bus.supervisor.config import ConfigError
from bus.supervisor.envfile import EnvFileError, parse_env, read_env_file
from bus.supervisor.procfile import Process, is_procfile, load_engines, parse_concurrency, parse_procfile

PROCFILE = """\
# the site
web: gunicorn app:app --bind "0.0.0.0:$PORT"

   # indented comment, then blank lines with spaces
\t
worker:python worker.py --queue 'high priority'  # the shell drops this comment
clock-2_b:   echo a:b:c
"""


def test_procfile_lines_skip_comments_and_blanks_and_keep_the_command_as_written() -> None:
    assert parse_procfile(PROCFILE, "Procfile") == [
        Process("web", 'gunicorn app:app --bind "0.0.0.0:$PORT"', 2),
        Process("worker", "python worker.py --queue 'high priority'  # the shell drops this comment", 6),
        Process("clock-2_b", "echo a:b:c", 7),  # only the first colon ends the name
    ]


@pytest.mark.parametrize(
    "text, words",
    [
        ("web: ok\nweb python app.py\n", "Procfile:2: 'web python app.py' is not a 'name: command' line (a name of letters, digits, '_' and '-', a colon, then the command): write it like 'web: python app.py', or begin it with # to comment it out"),
        ("my web: python app.py\n", "Procfile:1: 'my web: python app.py' is not a 'name: command' line"),
        ("web.1: python app.py\n", "Procfile:1: 'web.1: python app.py' is not a 'name: command' line"),
        ("\n\nweb:   \n", "Procfile:3: process 'web' has no command: write it after the colon ('web: python app.py')"),
        ("web: a\n# x\nweb: b\n", "Procfile:3: process 'web' is already on line 1: give each process its own name"),
        ("# only comments\n\n", "Procfile: no processes: add a line like 'web: python app.py'"),
    ],
)
def test_a_bad_procfile_line_is_one_line_naming_file_line_and_fix(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_procfile(text, "Procfile")
    assert str(info.value).startswith(words) and "\n" not in str(info.value)


ENV = """\
# comment
PLAIN=value with spaces   # trailing comment
export EXPORTED=yes
SPACED = around
SINGLE='kept $HOME \\n as is'  # comment
DOUBLE="say \\"hi\\"\\nnext\\tline \\$HOME"
HASH=a#b
EMPTY=
EMPTY_QUOTED=""
CRLF=ends\r
PLAIN=later wins
"""


def test_env_lines_as_foreman_and_honcho_read_them() -> None:
    assert parse_env(ENV, ".env") == {
        "PLAIN": "later wins",
        "EXPORTED": "yes",
        "SPACED": "around",
        "SINGLE": "kept $HOME \\n as is",
        "DOUBLE": 'say "hi"\nnext\tline $HOME',
        "HASH": "a#b",
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "CRLF": "ends",
    }


@pytest.mark.parametrize(
    "text, words",
    [
        ("A=1\njust words\n", ".env:2: 'just words' is not a KEY=VALUE line: write it as NAME=value"),
        ("1ABC=x\n", ".env:1: '1ABC=x' is not a KEY=VALUE line"),
        ("A='open\n", ".env:1: A: the value's opening ' is never closed: close it on the same line"),
        ('A="x" y\n', ".env:1: A: 'y' follows the closing \": quote the whole value, or begin a comment with #"),
    ],
)
def test_a_bad_env_line_names_file_and_line(text: str, words: str) -> None:
    with pytest.raises(EnvFileError) as info:
        parse_env(text, ".env")
    assert str(info.value).startswith(words) and "\n" not in str(info.value)


def test_a_missing_env_file_is_fine_only_when_it_is_the_default(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / ".env", missing_ok=True) == {}
    with pytest.raises(EnvFileError, match=r"nope.env: no such env file: create it \(KEY=VALUE lines\), or name another with --env-file"):
        read_env_file(tmp_path / "nope.env")


def test_concurrency_in_both_forms() -> None:
    assert parse_concurrency(["web=2", "worker=3,clock=0", "web=4"]) == {"web": 4, "worker": 3, "clock": 0}
    for bad in ("web", "web=", "=2", "web=-1", "web=two", "web=1001"):
        with pytest.raises(UsageError, match="give NAME=N with N from 0 to 1000"):
            parse_concurrency([bad])


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_engines_get_the_env_file_the_shell_and_foremans_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORT", raising=False)
    path = write(tmp_path, "Procfile", "web: serve $PORT\nclock: tick\nworker: work 'a b'\n")
    write(tmp_path, ".env", "GREETING=hi\n")
    web, worker = load_engines(path, concurrency={"web": 2, "clock": 0, "worker": 3})[0]
    assert (web.name, web.instances, web.port, worker.name, worker.instances, worker.port) == ("web", 2, 5000, "worker", 3, 5200)  # clock's index counts
    assert web.command == ("/bin/sh", "-c", "serve $PORT") and worker.command == ("/bin/sh", "-c", "work 'a b'")
    assert web.env == {"GREETING": "hi"} and web.cwd == tmp_path.resolve()
    # The base: --port, else PORT in the env file, else in our environment, else 5000.
    monkeypatch.setenv("PORT", "6000")
    assert [s.port for s in load_engines(path)[0]] == [6000, 6100, 6200]
    write(tmp_path, ".env", "PORT=7000\n")
    assert [s.port for s in load_engines(path)[0]] == [7000, 7100, 7200]
    assert [s.port for s in load_engines(path, port=8000)[0]] == [8000, 8100, 8200]
    other = write(tmp_path, "other.env", "OTHER=1\n")
    assert [(s.env, s.port) for s in load_engines(path, env_file=other)[0]][0] == ({"OTHER": "1"}, 6000)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"concurrency": {"wbe": 2}}, UsageError, "-c/--concurrency wbe=...: {path} has no process 'wbe'; did you mean 'web'?"),
        ({"concurrency": {"web": 0}}, ConfigError, "{path}: -c gives every process 0 instances: nothing would run"),
        ({"port": 65500, "concurrency": {"web": 40}}, ConfigError, "{path}:1: process 'web' would get $PORT 65539, past 65535: give a lower base with --port"),
        ({"env_file": "missing.env"}, EnvFileError, "missing.env: no such env file: create it (KEY=VALUE lines), or name another with --env-file"),
    ],
)
def test_what_cannot_run_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict, error: type, words: str) -> None:
    monkeypatch.delenv("PORT", raising=False)
    path = write(tmp_path, "Procfile", "web: serve\n")
    with pytest.raises(error) as info:
        load_engines(path, **kwargs)
    assert str(info.value) == words.format(path=path)


def test_a_bad_port_in_the_env_file(tmp_path: Path) -> None:
    path = write(tmp_path, "Procfile", "web: serve\n")
    write(tmp_path, ".env", "PORT=http\n")
    with pytest.raises(ConfigError, match=r"PORT='http' in .*\.env is not a port number: make it one from 1 to 65535, or give --port"):
        load_engines(path)


def test_which_files_are_procfiles(tmp_path: Path) -> None:
    assert is_procfile(tmp_path / "Procfile") and is_procfile(tmp_path / "Procfile.dev")  # by name, even before they exist
    assert not is_procfile(write(tmp_path, "jobs.toml", "web: x\n"))
    assert is_procfile(write(tmp_path, "services", "# mine\nweb: x\n"))
    assert not is_procfile(write(tmp_path, "bus.conf", "[engines.a]\ncommand = ['x']\n"))
    neither = write(tmp_path, "neither", "web python\n")
    with pytest.raises(ConfigError) as info:
        is_procfile(neither)
    assert str(info.value).startswith(f"{neither}: neither a TOML config (invalid TOML: ")
    assert str(info.value).endswith("nor a Procfile (line 1: 'web python' is not a 'name: command' line (a name of letters, digits, '_' and '-', "
                                    "a colon, then the command): write it like 'web: python app.py', or begin it with # to comment it out)")


def test_a_toml_config_takes_concurrency_and_env_file_but_not_port(tmp_path: Path) -> None:
    path = write(tmp_path, "bus.toml", "[engines.a]\ncommand = ['x']\n[engines.b]\ncommand = ['y']\n")
    write(tmp_path, "vars.env", "V=1\n")
    (a,), _ = load_engines(path, concurrency={"a": 3, "b": 0}, env_file=tmp_path / "vars.env")
    assert (a.name, a.instances, a.env, a.port) == ("a", 3, {"V": "1"}, None)
    with pytest.raises(UsageError, match="--port sets \\$PORT for a Procfile's processes"):
        load_engines(path, port=8000)
