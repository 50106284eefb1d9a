from __future__ import annotations

from pathlib import Path

import pytest

from bus.supervisor.config import ENGINE_CHECKS, SUPERVISOR_CHECKS, ConfigError, load_config


def _takes_numbers(check: object) -> bool:
    try:
        check(1.0)  # type: ignore[operator]
        return True
    except Exception:
        return False


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bus.toml"
    path.write_text(text)
    return path


def test_a_good_config(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    path = write(tmp_path, '[supervisor]\nstop_timeout = 2\n[engines.a]\ncommand = ["python", "a.py"]\nenv = { X = "1" }\ncwd = "work"\n[engines.b]\ncommand = ["b"]\n')
    engines, settings = load_config(path)
    assert [e.name for e in engines] == ["a", "b"]
    assert engines[0].command == ("python", "a.py") and engines[0].env == {"X": "1"}
    assert engines[0].cwd == (tmp_path / "work").resolve() and engines[1].cwd == tmp_path.resolve()
    assert settings == {"stop_timeout": 2.0}


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "no engines"),
        ("[engines.a]\ncommand = 'python a.py'\n", "engine 'a': command must be a list, not a shell string: command = [\"python\", \"a.py\"] (or set shell = true)"),
        ("[engines.a]\ncommand = ['x']\nshell = true\n", "engine 'a': with shell = true, command must be a non-empty string"),
        ("[engines.a]\ncommand = ['x']\ninstances = 0\n", "engine 'a': instances must be a whole number from 1 to 1000, got 0"),
        ("[engines.a]\ncommand = ['x']\ninstances = 2.5\n", "engine 'a': instances must be a whole number"),
        ("[engines.a]\ncommand = ['x']\nrestart = 'sometimes'\n", "engine 'a': restart must be one of 'never', 'on-failure', 'always', got 'sometimes'"),
        ("[engines.a]\ncommand = ['x']\nbackoff = 0\n", "engine 'a': backoff must be a number > 0 and <= 3600, got 0"),
        ("[engines.a]\ncommand = ['x']\nbackoff = 5\nbackoff_max = 2\n", "engine 'a': backoff_max (2) must be >= backoff (5)"),
        ("[engines.a]\ncommand = ['x']\nbackoff_jitter = 1.5\n", "engine 'a': backoff_jitter must be a number >= 0 and <= 0.99"),
        ("[engines.a]\ncommand = ['x']\nstop_signal = 'SIGKILL'\n", "engine 'a': stop_signal must be a signal name"),
        ("[engines.a]\ncommand = ['x']\nstop_signal = 'TERM'\n", "engine 'a': stop_signal must be a signal name"),
        ("[engines.a]\ncommand = ['x']\nheartbeat_timeout = -1\n", "engine 'a': heartbeat_timeout must be a number >= 0"),
        ("[engines.a]\ncommand = ['x']\non_exit = 'panic'\n", "engine 'a': on_exit must be one of 'ignore', 'restart', 'stop-all'"),
        ("[engines.a]\ncommand = ['x']\non_exit = 'restart'\nrestart = 'never'\n", "engine 'a': on_exit = \"restart\" contradicts restart = 'never'"),
        ("[engines.a]\ncommand = ['x']\ninstances = 2\n[engines.'a.1']\ncommand = ['y']\n", "engine name 'a.1' is used twice"),
        ("[supervisor]\nstop_timeout = 'soon'\n[engines.a]\ncommand = ['x']\n", "[supervisor]: stop_timeout must be a number >= 0"),
        ("[engines.a]\ncommand = []\n", "engine 'a': command must be a non-empty list of strings"),
        ("[engines.a]\ncommand = ['x']\ndroppable = ['result']\n", "engine 'a': droppable must be a list of kinds among finding, heartbeat, log, progress, screenshot (phase changes, results and errors are never dropped), got ['result']"),
        ("[engines.a]\ncomand = ['x']\n", "engine 'a': unknown key 'comand'; did you mean 'command'?"),
        ("[engines.a]\ncommand = ['x']\nzzz = 1\n", "engine 'a': unknown key 'zzz' (known: backoff, backoff_jitter, backoff_max, command, cwd, droppable, env, env_file, heartbeat_timeout, idle_timeout, instances, max_restarts, on_exit, on_unresponsive, queue, restart, restart_window, shell, stable_after, stop_signal, stop_timeout)"),
        ("[engines.a]\ncommand = ['x']\nenv = { X = 1 }\n", "engine 'a': env must be a table of strings"),
        ("[engines.a]\ncommand = ['x']\ncwd = 'nowhere'\n", "engine 'a': cwd 'nowhere' is not a directory"),
        ('[engines."a b"]\ncommand = ["x"]\n', "engine 'a b': the name may hold only"),
        ("[engine.a]\ncommand = ['x']\n", "unknown section 'engine'"),
        ("[supervisor]\nstop_timout = 1\n[engines.a]\ncommand=['x']\n", "[supervisor]: unknown key 'stop_timout'; did you mean 'stop_timeout'?"),
        ("[engines.a\ncommand = ['x']\n", "invalid TOML"),
        # Work queues (issue 20).
        ("[engines.a]\ncommand = ['x']\nqueue = 'a b'\n", "engine 'a': queue must be a queue's name"),
        ("[engines.a]\ncommand = ['x']\n[queues.q]\nmax_queued = 0\n", "[queues.q]: max_queued"),
        ("[engines.a]\ncommand = ['x']\n[queues.q]\nmax_atempts = 2\n", "[queues.q]: unknown key 'max_atempts'; did you mean 'max_attempts'?"),
        ("[engines.a]\ncommand = ['x']\n[queues]\nq = 3\n", "[queues.q]: must be a table (max_queued, max_attempts)"),
        # What the OS cannot take: seen as a ValueError traceback at spawn before it was refused here.
        ("[engines.a]\ncommand = ['x']\nenv = { 'A=B' = '1' }\n", "engine 'a': env variable name 'A=B' is not valid: a name is not empty and holds no '=' or NUL"),
        ("[engines.a]\ncommand = ['x']\nenv = { A = \"x\\u0000y\" }\n", "engine 'a': env variable A holds a NUL character"),
        ("[engines.a]\ncommand = ['x', \"a\\u0000b\"]\n", "engine 'a': command argument 2 holds a NUL character"),
        # env_file (issue 21): relative to the config file, and it must be there.
        ("[supervisor]\nenv_file = 'nope.env'\n[engines.a]\ncommand = ['x']\n", "[supervisor]: env_file 'nope.env' is not a file ("),
        ("[engines.a]\ncommand = ['x']\nenv_file = 3\n", "engine 'a': env_file must be a file's path (KEY=VALUE lines, relative to the config file), got 3"),
        ("[engines.a]\ncommand = ['x']\ninstances = 2\n[engines." + "n" * 127 + "]\ncommand = ['x']\ninstances = 2\n", "would be longer than 128 characters"),
    ],
)
def test_bad_configs_are_refused_in_one_line_naming_file_engine_and_key(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert words in message
    assert "\n" not in message


def test_lifecycle_keys(tmp_path: Path) -> None:
    path = write(tmp_path, """
[engines.w]
command = ["python", "w.py"]
instances = 3
restart = "on-failure"
backoff = 0.2
backoff_max = 5
backoff_jitter = 0.2
stable_after = 3
max_restarts = 4
restart_window = 20
stop_signal = "SIGINT"
stop_timeout = 2
heartbeat_timeout = 6
on_unresponsive = "restart"
on_exit = "stop-all"
[engines.daemon]
command = "sleep 100 && echo done"
shell = true
on_exit = "restart"
""")
    (w, daemon), _ = load_config(path)
    assert w.instance_names() == ["w.1", "w.2", "w.3"]
    assert (w.restart.mode, w.restart.backoff, w.restart.backoff_max, w.restart.jitter) == ("on-failure", 0.2, 5.0, 0.2)
    assert (w.restart.stable_after, w.restart.max_restarts, w.restart.window) == (3.0, 4, 20.0)
    assert (w.stop_signal, w.stop_timeout, w.heartbeat_timeout, w.on_unresponsive, w.on_exit) == ("SIGINT", 2.0, 6.0, "restart", "stop-all")
    assert daemon.command == ("/bin/sh", "-c", "sleep 100 && echo done")
    assert (daemon.restart.mode, daemon.on_exit, daemon.instance_names()) == ("always", "ignore", ["daemon"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml: no such file"):
        load_config(tmp_path / "nope.toml")


NUMBERS = [(table, key) for table, checks in (("engines.a", ENGINE_CHECKS), ("supervisor", SUPERVISOR_CHECKS)) for key, check in checks.items()
           if key not in ("instances", "max_restarts", "history_events") and _takes_numbers(check)]


@pytest.mark.parametrize("table, key", NUMBERS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e308", "-1e308"])
def test_every_number_in_a_config_has_a_finite_range(tmp_path: Path, table: str, key: str, value: str) -> None:
    """Seen before: `stop_timeout = inf` raised OverflowError at `bus down`, `backoff = 1e308` at the first restart."""
    head = "" if table == "engines.a" else f"[supervisor]\n{key} = {value}\n"
    engine = "[engines.a]\ncommand = ['x']\n" + (f"{key} = {value}\n" if table == "engines.a" else "")
    path = write(tmp_path, head + engine)
    with pytest.raises(ConfigError, match=f"{key} must be a number") as info:
        load_config(path)
    assert " and <= " in str(info.value), "the message names the upper bound"


def test_every_whole_number_has_a_range() -> None:
    for checks in (ENGINE_CHECKS, SUPERVISOR_CHECKS):
        for key in ("instances", "max_restarts", "history_events"):
            if key in checks:
                with pytest.raises(Exception, match="whole number from"):
                    checks[key](10**30)


def test_a_spawned_engine_is_checked_as_a_config_engine_and_its_program_must_be_there(tmp_path: Path) -> None:
    from bus.supervisor.config import spawned_engine

    spec = spawned_engine("job", {"command": ["python3", "-c", "pass"], "instances": 2, "restart": "on-failure", "cwd": str(tmp_path)}, Path("/"))
    assert (spec.name, spec.instances, spec.restart.mode, spec.cwd) == ("job", 2, "on-failure", tmp_path)
    for table, said in [
        ({"command": ["no-such-program-here"]}, "engine 'job': command 'no-such-program-here' not found (not on PATH); nothing was started"),
        ({"command": ["./missing.sh"], "cwd": str(tmp_path)}, "engine 'job': command './missing.sh' not found (no such file); nothing was started"),
        ({"command": ["python3"], "restrat": "always"}, "engine 'job': unknown key 'restrat'; did you mean 'restart'?"),
        ({"command": "python3 x.py"}, "engine 'job': command must be a list, not a shell string"),
        ({"command": ["python3"], "cwd": str(tmp_path / "nowhere")}, "engine 'job': cwd"),
    ]:
        with pytest.raises(ConfigError) as caught:
            spawned_engine("job", table, tmp_path)
        assert str(caught.value).startswith(said), str(caught.value)


def test_env_files_of_a_config_layer_under_env(tmp_path: Path) -> None:
    """[supervisor] env_file for every engine, an engine's own over it, its env over both; paths from the config's directory."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "all.env").write_text("# shared\nA=all\nB=all\nC=all\n")
    (tmp_path / "conf" / "b.env").write_text("export B=file\nC='file'\n")
    path = tmp_path / "conf" / "bus.toml"
    path.write_text('[supervisor]\nenv_file = "all.env"\n[engines.a]\ncommand = ["x"]\n[engines.b]\ncommand = ["y"]\nenv_file = "b.env"\nenv = { C = "table" }\n')
    (a, b), settings = load_config(path)
    assert a.env == {"A": "all", "B": "all", "C": "all"}
    assert b.env == {"A": "all", "B": "file", "C": "table"}
    assert settings == {}, "env_file is not a SupervisorConfig setting"
    (tmp_path / "cli.env").write_text("A=cli\n")
    (a, b), _ = load_config(path, env_file=tmp_path / "cli.env")  # bus up --env-file: in place of [supervisor]'s
    assert a.env == {"A": "cli"} and b.env == {"A": "cli", "B": "file", "C": "table"}
