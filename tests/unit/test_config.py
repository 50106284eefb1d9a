from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import ConfigError, load_config


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
        ("[engines.a]\ncommand = 'python a.py'\n", "engine 'a': command must be a list, not a shell string: command = [\"python\", \"a.py\"]"),
        ("[engines.a]\ncommand = []\n", "engine 'a': command must be a non-empty list of strings"),
        ("[engines.a]\ncomand = ['x']\n", "engine 'a': unknown key 'comand' (known: command, cwd, env)"),
        ("[engines.a]\ncommand = ['x']\nenv = { X = 1 }\n", "engine 'a': env must be a table of strings"),
        ("[engines.a]\ncommand = ['x']\ncwd = 'nowhere'\n", "engine 'a': cwd 'nowhere' is not a directory"),
        ('[engines."a b"]\ncommand = ["x"]\n', "engine 'a b': the name may hold only"),
        ("[engine.a]\ncommand = ['x']\n", "unknown section 'engine'"),
        ("[supervisor]\nstop_timout = 1\n[engines.a]\ncommand=['x']\n", "[supervisor]: unknown key 'stop_timout'"),
        ("[engines.a\ncommand = ['x']\n", "invalid TOML"),
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


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml: no such file"):
        load_config(tmp_path / "nope.toml")
