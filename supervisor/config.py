"""What a supervisor runs: engine specs, from a TOML file or built by the CLI.

    [supervisor]                  # optional
    stop_timeout = 10             # default for engines: seconds from stop signal to SIGKILL
    history_events = 100000       # in-memory history: events ...
    history_mb = 256              # ... and megabytes
    journal = true                # keep every event on disk too
    journal_max_mb = 1024         # journal retention: size ...
    journal_max_days = 7          # ... and age
    listen = "tcp://0.0.0.0:7010" # also listen on TCP: control on PORT, pub on PORT+1, pull on PORT+2
    insecure = false              # allow a non-loopback listen without keys (warned on every start)
    remote_timeout = 30           # a remote engine (bus attach) whose hello names no heartbeat: lost after this much silence
    serve_after = 30              # after the run, serve history this long at most to subscribers that said they are behind
    env_file = ".env"             # KEY=VALUE lines for every engine's environment (relative to this file; `bus up --env-file` names another)

    [security]                    # CurveZMQ on every TCP endpoint (docs/SECURITY.md)
    server_key = "keys/server.key_secret"
    engines = ["keys/engines/"]   # public keys (files, or directories of *.key) allowed to push
    subscribers = ["keys/viewer.key"]  # ... to read PUB and ask status, snapshot, history
    admins = ["keys/ops.key"]     # ... to read, and to start, stop, restart, down

    [engines.audit]
    command = ["python", "audit_engine.py", "--site", "shop"]   # a list; a string only with shell = true
    env = { AUDIT_PAGES = "12" }  # added to the supervisor's environment
    env_file = "audit.env"        # more variables, over [supervisor]'s env_file and under env (supervisor/envfile.py)
    cwd = "."                     # relative to the config file; default: its directory
    instances = 3                 # audit.1, audit.2, audit.3
    restart = "on-failure"        # never | on-failure | always
    backoff = 0.5                 # first restart delay; doubles up to backoff_max, +- backoff_jitter
    max_restarts = 5              # restarts allowed within restart_window seconds, then FATAL
    heartbeat_timeout = 30        # SDK engines silent (or whose work is still) this long are unresponsive (0: off)
    idle_timeout = 0              # any engine with no event and no output line this long is unresponsive (0: off)
    on_exit = "stop-all"          # ignore | restart | stop-all: what its exit means for the run
    droppable = ["progress"]      # kinds its SDK may drop under pressure (default: heartbeat, progress, screenshot)

A bad file is refused with one line naming the file, the engine and the key.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import shutil
import signal
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from bus.errors import BusError, UsageError
from bus.keys import Security, is_loopback, load_security
from bus.process import MAX_LINE
from bus.protocol import MAY_BE_DROPPED
from bus.protocol.limits import ENGINE_NAME
from bus.runtime import tcp_endpoints

from .envfile import read_env_file
from .queues import QueueSpec

MAX_INSTANCES = 1000


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    mode: str = "never"          # never | on-failure | always
    backoff: float = 0.5         # first delay, seconds; doubles each restart
    backoff_max: float = 30.0    # cap on the delay
    jitter: float = 0.1          # each delay is scaled by 1 +- jitter, at random
    stable_after: float = 10.0   # a run this long resets the delay to `backoff`
    max_restarts: int = 5        # restarts allowed within `window` seconds...
    window: float = 60.0         # ...then the engine is FATAL


@dataclass(frozen=True, slots=True)
class EngineSpec:
    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    instances: int = 1
    restart: RestartPolicy = RestartPolicy()
    stop_signal: str = "SIGTERM"
    stop_timeout: float | None = None   # None: the supervisor's default
    heartbeat_timeout: float = 30.0     # 0: off
    idle_timeout: float = 0.0           # no event (but heartbeats) and no output line this long: unresponsive (0: off)
    on_unresponsive: str = "report"     # report | restart
    on_exit: str = "ignore"             # ignore | stop-all (restart is `restart`'s job)
    droppable: tuple[str, ...] | None = None  # kinds its SDK may drop under pressure (None: the SDK's default)
    queue: str | None = None            # the work queue its instances take jobs from (supervisor/work.py)
    port: int | None = None             # $PORT of its first instance, the next one's +1 (a Procfile's engines: supervisor/procfile.py)
    explicit: frozenset[str] = frozenset()    # the keys its config set (a setting that cannot apply to it is warned about)

    def instance_names(self) -> list[str]:
        """`name` for one instance; `name.1` .. `name.N` for several."""
        if self.instances == 1:
            return [self.name]
        return [f"{self.name}.{k}" for k in range(1, self.instances + 1)]


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    engines: tuple[EngineSpec, ...]
    session: str | None = None          # local session name (None: $BUS_SESSION or "default")
    listen: str | None = None           # extra tcp://HOST:PORT endpoints
    security: Security | None = None    # CURVE keys for the tcp endpoints (bus/keys.py)
    insecure: bool = False              # a non-loopback listen without keys is allowed (and warned about)
    exit_when_done: bool = True         # stop once every engine has exited for good
    exit_code_from: str | None = None   # engine whose exit code is the run's (bus run)
    stop_timeout: float = 10.0          # stop signal -> SIGKILL, seconds (engines may override)
    drain_grace: float = 0.5            # after an exit, wait this long for its last events
    remote_timeout: float = 30.0        # a remote engine whose hello names no heartbeat is lost after this much silence
    serve_after: float = 30.0           # after the run, keep serving subscribers that said they are behind, this long at most
    history_events: int = 100_000       # in-memory history bound, events
    history_bytes: int = 256 * 1024 * 1024  # ... and bytes
    max_line: int = MAX_LINE            # longer stdout/stderr lines are cut
    watchdog: bool = True               # engines die with a SIGKILLed supervisor (POSIX)
    journal: bool = True                # keep every event on disk (bus/journal.py)
    journal_max_bytes: int = 1024**3    # retention: the oldest events go beyond this size...
    journal_max_age: float = 7 * 86400  # ... or this age (seconds)
    queues: Mapping[str, QueueSpec] = field(default_factory=dict)  # [queues.NAME] (engines' `queue` add theirs)

    def __post_init__(self) -> None:
        check_listen(self.listen, self.security, self.insecure)

    def queue_specs(self) -> dict[str, QueueSpec]:
        """Every queue: those of [queues.NAME], and those engines name (with the default bounds)."""
        specs = dict(self.queues)
        for spec in self.engines:
            if spec.queue and spec.queue not in specs:
                specs[spec.queue] = QueueSpec()
        return specs

    @property
    def exposed(self) -> bool:
        """Listening beyond this machine with no keys (allowed only with `insecure`)."""
        return bool(self.listen) and self.security is None and not is_loopback(listen_host(self.listen))


def listen_host(listen: str) -> str:
    return tcp_endpoints(listen)["control"].removeprefix("tcp://").rsplit(":", 1)[0]


def check_listen(listen: str | None, security: Security | None, insecure: bool) -> None:
    """A TCP bind beyond loopback needs CURVE keys, or an explicit `insecure`."""
    if not listen or security is not None or insecure:
        return
    host = listen_host(listen)
    if not is_loopback(host):
        raise ConfigError(
            f"listen {listen}: {host} is not a loopback address, and without keys anyone who reaches it could "
            "read every event and stop engines: give the supervisor keys ([security] in the config, or --keys DIR; "
            "see docs/SECURITY.md), or pass --insecure on a network you trust"
        )


class ConfigError(BusError):
    pass


def load_config(path: str | Path, *, remote_only: bool = False, env_file: Path | None = None,
                instances: Mapping[str, int] | None = None) -> tuple[tuple[EngineSpec, ...], dict[str, Any]]:
    """Engine specs and supervisor settings (SupervisorConfig keywords) from a TOML file.
    `remote_only`: a file without engines is fine (a supervisor kept for remote engines).
    `env_file` takes the place of [supervisor]'s; `instances` sets engines' (`bus up -c`; 0: not run)."""
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
    unknown = set(data) - {"engines", "supervisor", "security", "queues"}
    if unknown:
        raise ConfigError(f"{path}: unknown section {sorted(unknown)[0]!r} (known: engines, supervisor, security, queues)")
    supervisor = data.get("supervisor", {})
    shared = supervisor.pop("env_file", None) if isinstance(supervisor, dict) else None
    settings = supervisor_settings(path, supervisor)
    if "queues" in data:
        settings["queues"] = _queues(path, data["queues"])
    if "security" in data:
        settings["security"] = _security(path, data["security"])
    engines = data.get("engines", {} if remote_only else None)
    if not isinstance(engines, dict) or not (engines or remote_only):
        raise ConfigError(f"{path}: no engines: add a table like [engines.worker] with command = [\"python\", \"worker.py\"] "
                          "(or start it with --keep, to wait for remote engines: docs/DEPLOY.md)")
    base = path.parent.resolve()
    instances = instances or {}
    check_overrides(instances, list(engines), f"{path} has no engine")
    env: dict[str, str] = {}  # every engine's, under its own env_file and env
    if env_file is not None:
        env = read_env_file(env_file)
    elif shared is not None:
        env = _env_file(f"{path}: [supervisor]:", base, shared)
    tables = {name: {**table, "instances": instances[name]} if name in instances and isinstance(table, dict) else table for name, table in engines.items()}
    specs = tuple(_engine(path, base, name, table, env) for name, table in tables.items() if instances.get(name) != 0)
    seen: set[str] = set()
    clash = next((n for spec in specs for n in spec.instance_names() if n in seen or seen.add(n)), None)  # (not names.count: quadratic in 10,000 names)
    if clash:
        raise ConfigError(f"{path}: engine name {clash!r} is used twice (an instance of one engine is named like another engine)")
    return specs, settings


# -- checkers: each returns the value to use, or a sentence saying what is wrong ----------

Check = Callable[[Any], Any]


class _Bad(Exception):
    pass


def _number(low: float, high: float, *, above: bool = False) -> Check:
    """A finite number in [low, high] (or (low, high] with `above`): every number a config holds has a range."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > low if above else value >= low) or not value <= high:
            bound = f"> {low:g}" if above else f">= {low:g}"
            raise _Bad(f"must be a number {bound} and <= {high:g}, got {value!r}")
        return float(value)

    return check


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Bad(f"must be a whole number from {low} to {high}, got {value!r}")
        return value

    return check


def _choice(*allowed: str) -> Check:
    def check(value: Any) -> str:
        if value not in allowed:
            raise _Bad(f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value

    return check


def _signal_name(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("SIG") or not hasattr(signal, value) or value in ("SIGKILL", "SIGSTOP"):
        raise _Bad(f"must be a signal name such as \"SIGTERM\" or \"SIGINT\" (not SIGKILL/SIGSTOP), got {value!r}")
    return value


def _kinds_to_drop(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not set(value) <= MAY_BE_DROPPED:
        raise _Bad(
            f"must be a list of kinds among {', '.join(sorted(MAY_BE_DROPPED))} (phase changes, results and errors "
            f"are never dropped), got {value!r}"
        )
    return tuple(sorted(set(value)))


def _listen(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be an address like \"tcp://127.0.0.1:7010\", got {value!r}")
    try:
        tcp_endpoints(value)
    except BusError:
        raise _Bad(f"must be an address like \"tcp://127.0.0.1:7010\" (port at most 65533), got {value!r}") from None
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, got {value!r}")
    return value


DAY = 86400.0
ENGINE_CHECKS: dict[str, Check] = {
    "instances": _integer(1, MAX_INSTANCES),
    "restart": _choice("never", "on-failure", "always"),
    "backoff": _number(0, 3600, above=True),
    "backoff_max": _number(0, DAY, above=True),
    "backoff_jitter": _number(0, 0.99),
    "stable_after": _number(0, 7 * DAY),
    "max_restarts": _integer(0, 1_000_000),
    "restart_window": _number(0, 7 * DAY, above=True),
    "stop_signal": _signal_name,
    "stop_timeout": _number(0, DAY),
    "heartbeat_timeout": _number(0, DAY),
    "idle_timeout": _number(0, DAY),
    "on_unresponsive": _choice("report", "restart"),
    "on_exit": _choice("ignore", "restart", "stop-all"),
    "shell": _boolean,
    "droppable": _kinds_to_drop,
    "queue": lambda value: _queue_name(value),
}
ENGINE_KEYS = {"command", "env", "env_file", "cwd", *ENGINE_CHECKS}
SUPERVISOR_CHECKS: dict[str, Check] = {
    "stop_timeout": _number(0, DAY),
    "history_events": _integer(1, 100_000_000),
    "history_mb": _number(1, 1024 * 1024),
    "journal": _boolean,
    "journal_max_mb": _number(1, 100 * 1024 * 1024),
    "journal_max_days": _number(0, 36500, above=True),
    "listen": _listen,
    "insecure": _boolean,
    "remote_timeout": _number(0, DAY, above=True),
    "serve_after": _number(0, DAY),
}
SECURITY_KEYS = {"server_key", "engines", "subscribers", "admins", "producers"}


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(known))})"


def supervisor_settings(path: Path | str, table: Any) -> dict[str, Any]:
    """A [supervisor] table (from `path`: a file, or where else it came from), checked: SupervisorConfig keywords."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [supervisor] must be a table")
    settings = _checked(f"{path}: [supervisor]:", table, SUPERVISOR_CHECKS)
    scaled = {"history_mb": ("history_bytes", 1024**2), "journal_max_mb": ("journal_max_bytes", 1024**2), "journal_max_days": ("journal_max_age", 86400)}
    for key, (name, unit) in scaled.items():
        if key in settings:
            settings[name] = int(settings.pop(key) * unit) if name.endswith("bytes") else settings.pop(key) * unit
    return settings


def _checked(where: str, table: dict[str, Any], checks: dict[str, Check]) -> dict[str, Any]:
    """Each key of a table through its check; an unknown key or a bad value is a one-line ConfigError."""
    out = {}
    for key, value in table.items():
        check = checks.get(key)
        if check is None:
            raise ConfigError(f"{where} unknown key {key!r}{_suggest(key, checks)}")
        try:
            out[key] = check(value)
        except _Bad as exc:
            raise ConfigError(f"{where} {key} {exc}") from None
    return out


QUEUE_CHECKS: dict[str, Check] = {
    "max_queued": _integer(1, 100_000_000),
    "max_attempts": _integer(1, 1_000_000),
}


def _queues(path: Path, table: Any) -> dict[str, QueueSpec]:
    """[queues.NAME] tables: each queue's bounds."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [queues] must hold tables like [queues.library] with max_queued = 100000")
    specs = {}
    for name, values in table.items():
        where = f"{path}: [queues.{name}]"
        if not ENGINE_NAME.fullmatch(name):
            raise ConfigError(f"{where}: a queue's name may hold only letters, digits, '_', '.', '-' (at most 128)")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: must be a table (max_queued, max_attempts)")
        specs[name] = QueueSpec(**_checked(f"{where}:", values, QUEUE_CHECKS))
    return specs


def _queue_name(value: Any) -> str:
    if not isinstance(value, str) or not ENGINE_NAME.fullmatch(value):
        raise _Bad(f"must be a queue's name (letters, digits, '_', '.', '-'; at most 128), got {value!r}")
    return value


def _security(path: Path, table: Any) -> Security:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [security] must be a table")
    for key in table:
        if key not in SECURITY_KEYS:
            raise ConfigError(f"{path}: [security]: unknown key {key!r}{_suggest(key, SECURITY_KEYS)}")
    return load_security(path.parent.resolve(), table, f"{path}: [security]")


def spawned_engine(name: str, table: Any, base: Path) -> EngineSpec:
    """An engine a `spawn` request adds: the same keys and checks as a TOML engine table
    (relative paths from `base`), and its program must be there to run. ConfigError says why not."""
    spec = _engine_at(f"engine {name!r}", base, name, table)
    program = spec.command[0]
    found = (spec.cwd / program).is_file() if os.sep in program or (os.altsep and os.altsep in program) else shutil.which(program, path=spec.env.get("PATH", os.environ.get("PATH")))
    if not found:
        raise ConfigError(f"engine {name!r}: command {program!r} not found ({'no such file' if os.sep in program else 'not on PATH'}); nothing was started")
    return spec


def _engine(path: Path, base: Path, name: str, table: Any, shared_env: Mapping[str, str]) -> EngineSpec:
    return _engine_at(f"{path}: engine {name!r}", base, name, table, shared_env)


def check_overrides(overrides: Mapping[str, int], names: list[str], missing: str) -> None:
    """Every engine `bus up -c NAME=N` names is there: UsageError says which is not."""
    for name in overrides:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"it has {', '.join(names) or 'none'}"
            raise UsageError(f"-c/--concurrency {name}=...: {missing} {name!r}; {hint}")


def _env_file(where: str, base: Path, value: Any) -> dict[str, str]:
    """The variables of an `env_file` key's file (relative to `base`); it must be there."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{where} env_file must be a file's path (KEY=VALUE lines, relative to the config file), got {value!r}")
    if not (base / value).is_file():
        raise ConfigError(f"{where} env_file {value!r} is not a file ({base / value}): create it (KEY=VALUE lines), or correct the path")
    return read_env_file(base / value)


def _engine_at(where: str, base: Path, name: str, table: Any, shared_env: Mapping[str, str] | None = None) -> EngineSpec:
    if not ENGINE_NAME.fullmatch(name):
        raise ConfigError(f"{where}: the name may hold only letters, digits, '_', '.', '-' (at most 128)")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table with a command")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in ENGINE_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{_suggest(key, ENGINE_KEYS)}")
        if key in ENGINE_CHECKS:
            try:
                values[key] = ENGINE_CHECKS[key](value)
            except _Bad as exc:
                raise ConfigError(f"{where}: {key} {exc}") from None
    longest = f"{name}.{values['instances']}" if values.get("instances", 1) > 1 else name
    if not ENGINE_NAME.fullmatch(longest):
        raise ConfigError(f"{where}: the instance name {longest!r} would be longer than 128 characters: shorten the engine's name")
    command = _command(where, table.get("command"), values.get("shell", False))
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{where}: env must be a table of strings, e.g. env = {{ LEVEL = \"2\" }}")
    env = {**(shared_env or {}), **(_env_file(f"{where}:", base, table["env_file"]) if "env_file" in table else {}), **env}
    problem = env_problem(env)
    if problem:
        raise ConfigError(f"{where}: env {problem}")
    cwd = table.get("cwd", ".")
    if not isinstance(cwd, str) or "\0" in cwd:
        raise ConfigError(f"{where}: cwd must be a string (a directory, relative to the config file)")
    directory = (base / cwd).resolve()
    if not directory.is_dir():
        raise ConfigError(f"{where}: cwd {cwd!r} is not a directory ({directory})")
    return _spec(where, name, command, dict(env), directory, values)


def _command(where: str, command: Any, shell: bool) -> tuple[str, ...]:
    if shell:
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(f"{where}: with shell = true, command must be a non-empty string")
        if os.name == "nt":  # pragma: no cover - Windows
            return (os.environ.get("COMSPEC", "cmd.exe"), "/c", command)
        return ("/bin/sh", "-c", command)
    if isinstance(command, str):
        try:
            words = shlex.split(command) or ["program"]
        except ValueError:  # unbalanced quotes
            words = command.split() or ["program"]
        raise ConfigError(
            f"{where}: command must be a list, not a shell string: command = {json.dumps(words)} "
            "(or set shell = true)"
        )
    if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
        raise ConfigError(f"{where}: command must be a non-empty list of strings, e.g. [\"python\", \"worker.py\"]")
    problem = command_problem(command)
    if problem:
        raise ConfigError(f"{where}: command {problem}")
    return tuple(command)


def command_problem(command: Iterable[str]) -> str:
    """Why the OS could not run this command line ('' if it could): a NUL inside an argument."""
    bad = next((i for i, arg in enumerate(command) if "\0" in arg), None)
    return "" if bad is None else f"argument {bad + 1} holds a NUL character, which no program can receive"


def env_problem(env: Mapping[str, str]) -> str:
    """Why the OS could not take these variables ('' if it could): an empty name, '=' in a name, or a NUL."""
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            return f"variable name {key!r} is not valid: a name is not empty and holds no '=' or NUL"
        if "\0" in value:
            return f"variable {key} holds a NUL character, which no environment can carry"
    return ""


def _spec(where: str, name: str, command: tuple[str, ...], env: dict[str, str], cwd: Path, values: dict[str, Any]) -> EngineSpec:
    mode = values.get("restart")
    on_exit = values.get("on_exit", "ignore")
    if on_exit == "restart":  # "restart whatever the exit": the restart policy "always"
        if mode not in (None, "always"):
            raise ConfigError(f"{where}: on_exit = \"restart\" contradicts restart = {mode!r}: drop one of them")
        mode, on_exit = "always", "ignore"
    policy = RestartPolicy()
    policy = replace(
        policy,
        mode=mode or policy.mode,
        backoff=values.get("backoff", policy.backoff),
        backoff_max=values.get("backoff_max", max(policy.backoff_max, values.get("backoff", 0.0))),
        jitter=values.get("backoff_jitter", policy.jitter),
        stable_after=values.get("stable_after", policy.stable_after),
        max_restarts=values.get("max_restarts", policy.max_restarts),
        window=values.get("restart_window", policy.window),
    )
    if policy.backoff_max < policy.backoff:
        raise ConfigError(f"{where}: backoff_max ({policy.backoff_max:g}) must be >= backoff ({policy.backoff:g})")
    if values.get("on_unresponsive") == "restart" and values.get("heartbeat_timeout", 30.0) == 0 and not values.get("idle_timeout"):
        raise ConfigError(f"{where}: on_unresponsive = \"restart\" with heartbeat_timeout = 0 and no idle_timeout: nothing could make it unresponsive")
    return EngineSpec(
        name=name,
        command=command,
        env=env,
        cwd=cwd,
        instances=values.get("instances", 1),
        restart=policy,
        stop_signal=values.get("stop_signal", "SIGTERM"),
        stop_timeout=values.get("stop_timeout"),
        heartbeat_timeout=values.get("heartbeat_timeout", 30.0),
        idle_timeout=values.get("idle_timeout", 0.0),
        on_unresponsive=values.get("on_unresponsive", "report"),
        on_exit=on_exit,
        droppable=values.get("droppable"),
        queue=values.get("queue"),
        explicit=frozenset(values),
    )
