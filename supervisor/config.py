"""What a supervisor runs: engine specs, from a TOML file or built by the CLI.

    [supervisor]                 # optional
    stop_timeout = 10            # seconds between SIGTERM and SIGKILL

    [engines.audit]
    command = ["python", "audit_engine.py", "--site", "shop"]
    env = { AUDIT_PAGES = "12" }  # added to the supervisor's environment
    cwd = "."                     # relative to the config file; default: its directory

A bad file is refused with one line naming the file, the engine and the key.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bus.errors import BusError
from bus.protocol.limits import ENGINE_NAME


@dataclass(frozen=True, slots=True)
class EngineSpec:
    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    engines: tuple[EngineSpec, ...]
    session: str | None = None          # local session name (None: $BUS_SESSION or "default")
    listen: str | None = None           # extra tcp://HOST:PORT endpoints
    exit_when_done: bool = True         # stop once every engine has exited
    exit_code_from: str | None = None   # engine whose exit code is the run's (bus run)
    stop_timeout: float = 10.0          # SIGTERM -> SIGKILL, seconds
    drain_grace: float = 0.5            # after an exit, wait this long for its last events
    history_events: int = 100_000       # in-memory history bound, events
    history_bytes: int = 256 * 1024 * 1024  # ... and bytes
    max_line: int = 64 * 1024           # longer stdout/stderr lines are cut


ENGINE_KEYS = {"command", "env", "cwd"}
SUPERVISOR_KEYS = {"stop_timeout"}


class ConfigError(BusError):
    pass


def load_config(path: str | Path) -> tuple[tuple[EngineSpec, ...], dict[str, Any]]:
    """Engine specs and supervisor settings from a TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = set(data) - {"engines", "supervisor"}
    if unknown:
        raise ConfigError(f"{path}: unknown section {sorted(unknown)[0]!r} (known: engines, supervisor)")
    settings = _supervisor_settings(path, data.get("supervisor", {}))
    engines = data.get("engines")
    if not isinstance(engines, dict) or not engines:
        raise ConfigError(f"{path}: no engines: add a table like [engines.worker] with command = [\"python\", \"worker.py\"]")
    base = path.parent.resolve()
    return tuple(_engine(path, base, name, table) for name, table in engines.items()), settings


def _supervisor_settings(path: Path, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [supervisor] must be a table")
    for key, value in table.items():
        if key not in SUPERVISOR_KEYS:
            raise ConfigError(f"{path}: [supervisor]: unknown key {key!r} (known: {', '.join(sorted(SUPERVISOR_KEYS))})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{path}: [supervisor]: {key} must be a number of seconds >= 0")
    return {k: float(v) for k, v in table.items()}


def _engine(path: Path, base: Path, name: str, table: Any) -> EngineSpec:
    where = f"{path}: engine {name!r}"
    if not ENGINE_NAME.fullmatch(name):
        raise ConfigError(f"{where}: the name may hold only letters, digits, '_', '.', '-' (at most 128)")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table with a command")
    for key in table:
        if key not in ENGINE_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(ENGINE_KEYS))})")
    command = table.get("command")
    if isinstance(command, str):
        try:
            words = shlex.split(command) or ["program"]
        except ValueError:  # unbalanced quotes
            words = command.split() or ["program"]
        suggestion = json.dumps(words)
        raise ConfigError(f"{where}: command must be a list, not a shell string: command = {suggestion}")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
        raise ConfigError(f"{where}: command must be a non-empty list of strings, e.g. [\"python\", \"worker.py\"]")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{where}: env must be a table of strings, e.g. env = {{ LEVEL = \"2\" }}")
    cwd = table.get("cwd", ".")
    if not isinstance(cwd, str):
        raise ConfigError(f"{where}: cwd must be a string (a directory, relative to the config file)")
    directory = (base / cwd).resolve()
    if not directory.is_dir():
        raise ConfigError(f"{where}: cwd {cwd!r} is not a directory ({directory})")
    return EngineSpec(name=name, command=tuple(command), env=dict(env), cwd=directory)
