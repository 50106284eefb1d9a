"""Procfiles (the foreman and honcho convention): each `name: command` line an engine.

    # comments and blank lines are skipped
    web: python -m http.server $PORT
    worker: python worker.py --queue "high priority" 2>&1

A command runs through the shell (`/bin/sh -c`; `cmd /c` on Windows), in the
Procfile's directory, so quoting, `$VAR`, pipes and `&&` work as in foreman. A
name holds letters, digits, '_' and '-'. An engine's environment is ours, then
the env file's (`.env` beside the Procfile unless another is named; a missing
default one is fine), then `PORT`, as foreman gives it: base + 100 * the
process's index in the file + the instance's index (web 5000, or web.1 5000 and
web.2 5001; worker.1 5100). The base is `--port`, else PORT in the env file,
else PORT in our environment, else 5000. Concurrency (`-c web=2`) is each
engine's `instances`; 0 runs none of that process (its index still counts).

`bus up PATH` takes a Procfile when PATH is named `Procfile` or `Procfile.*`, or
is not a `.toml` file and reads as Procfile lines; anything else is a TOML config.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from bus.errors import UsageError

from .config import MAX_INSTANCES, ConfigError, EngineSpec, _engine_at, check_overrides, load_config
from .envfile import read_env_file

BASE_PORT = 5000
_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Process:
    name: str
    command: str
    line: int   # where it is in the Procfile, for errors


def parse_procfile(text: str, where: str) -> list[Process]:
    """Its `name: command` lines (`where` names the file in errors: `FILE:LINE: ...`)."""
    found: dict[str, Process] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, command = line.partition(":")
        at = f"{where}:{number}:"
        if not colon or not _NAME.fullmatch(name):
            shown = repr(line if len(line) <= 60 else line[:57] + "...")
            raise ConfigError(
                f"{at} {shown} is not a 'name: command' line (a name of letters, digits, '_' and '-', a colon, then the "
                "command): write it like 'web: python app.py', or begin it with # to comment it out"
            )
        if not command.strip():
            raise ConfigError(f"{at} process {name!r} has no command: write it after the colon ('{name}: python app.py')")
        if name in found:
            raise ConfigError(f"{at} process {name!r} is already on line {found[name].line}: give each process its own name")
        found[name] = Process(name, command.strip(), number)
    if not found:
        raise ConfigError(f"{where}: no processes: add a line like 'web: python app.py'")
    return list(found.values())


def parse_concurrency(values: Iterable[str]) -> dict[str, int]:
    """`-c` values: `web=2`, or several as `web=2,worker=3` (foreman's form); a later one wins."""
    counts: dict[str, int] = {}
    for value in values:
        for item in value.split(","):
            name, equals, count = item.strip().partition("=")
            if not equals or not name.strip() or not count.strip().isdigit() or int(count) > MAX_INSTANCES:
                raise UsageError(f"-c/--concurrency {item.strip()!r}: give NAME=N with N from 0 to {MAX_INSTANCES}, e.g. -c web=2,worker=3")
            counts[name.strip()] = int(count)
    return counts


def is_procfile(path: Path) -> bool:
    """Whether `bus up PATH` reads PATH as a Procfile (else as a TOML config); a file
    that is neither, by its name or its text, is refused here with both reasons."""
    if path.suffix == ".toml":
        return False
    if path.name == "Procfile" or path.name.startswith("Procfile."):
        return True
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False  # load_config says what is wrong with it
    try:
        parse_procfile(text, str(path))
        return True
    except ConfigError as exc:
        problem = str(exc).removeprefix(f"{path}:").lstrip()
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: neither a TOML config (invalid TOML: {exc}) nor a Procfile (line {problem})") from None
    return False


def load_engines(path: str | Path, *, concurrency: Mapping[str, int] | None = None, env_file: str | Path | None = None,
                 port: int | None = None, remote_only: bool = False) -> tuple[tuple[EngineSpec, ...], dict[str, Any]]:
    """What `bus up PATH` runs: a Procfile's engines, or a TOML config's engines and settings.
    `concurrency` sets instances (either kind); `env_file` replaces the default one (a
    Procfile's `.env`, a config's [supervisor] env_file); `port` is a Procfile's $PORT base."""
    path = Path(path)
    concurrency = dict(concurrency or {})
    env_path = Path(env_file) if env_file is not None else None
    if is_procfile(path):
        return procfile_engines(path, concurrency=concurrency, env_file=env_path, port=port), {}
    if port is not None:
        raise UsageError(f"--port sets $PORT for a Procfile's processes; {path} is a TOML config: set PORT in an engine's env")
    return load_config(path, remote_only=remote_only, env_file=env_path, instances=concurrency)


def procfile_engines(path: Path, *, concurrency: Mapping[str, int], env_file: Path | None, port: int | None) -> tuple[EngineSpec, ...]:
    processes = parse_procfile(_read(path), str(path))
    check_overrides(concurrency, [p.name for p in processes], f"{path} has no process")
    env_path = env_file if env_file is not None else path.parent / ".env"
    env = read_env_file(env_path, missing_ok=env_file is None)
    base = port if port is not None else _base_port(env, env_path)
    directory = path.parent.resolve()
    specs = []
    for index, process in enumerate(processes):
        count = concurrency.get(process.name, 1)
        first = base + 100 * index
        if count and first + count - 1 > 65535:
            raise ConfigError(f"{path}:{process.line}: process {process.name!r} would get $PORT {first + count - 1}, past 65535: give a lower base with --port")
        if count:
            table = {"command": process.command, "shell": True, "env": env, "instances": count}
            spec = _engine_at(f"{path}:{process.line}: process {process.name!r}", directory, process.name, table)
            specs.append(replace(spec, port=first))
    if not specs:
        raise ConfigError(f"{path}: -c gives every process 0 instances: nothing would run")
    return tuple(specs)


def _base_port(env: Mapping[str, str], env_path: Path) -> int:
    for source, values in ((str(env_path), env), ("the environment", os.environ)):
        if "PORT" in values:
            text = values["PORT"].strip()
            if not text.isdigit() or not 1 <= int(text) <= 65535:
                raise ConfigError(f"PORT={values['PORT']!r} in {source} is not a port number: make it one from 1 to 65535, or give --port")
            return int(text)
    return BASE_PORT


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a Procfile") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None

