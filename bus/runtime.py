"""Where a supervisor's sockets live, and how `bus tail` / `bus status` find them.

A local supervisor belongs to a *session* (default name "default"): a private
run directory `<base>/<session>/` (mode 0700) holding its ipc sockets `ctl`,
`pub` and `pull`, an owner-only `supervisor.json` describing the run, and a
`lock` file that the supervisor holds (flock) for its lifetime, so two
supervisors never share a session and a crashed one never blocks the next.

`<base>` is `$BUS_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/bus`, else
`<tmp>/bus-<uid>`. The session's journal lives on disk instead, under
`$BUS_STATE_DIR`, else `$XDG_STATE_HOME/bus`, else `~/.local/state/bus`. The socket paths are fixed, so a tool can connect before
the supervisor exists: zmq keeps retrying until it binds.

Windows has no ipc: there the supervisor binds tcp on 127.0.0.1 with random
ports and tools read them from `supervisor.json` (owner-only on POSIX; on
Windows it relies on the profile directory's ACL).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from .errors import BusError, UsageError
from .keys import ClientKeys, client_keys
from .protocol.limits import ENGINE_NAME

# Windows has no ipc://: there the local endpoints are TCP on 127.0.0.1, their ports in supervisor.json.
# BUS_LOCAL_TCP=1 makes any platform take that path (.ci/run runs the integration tests so on Linux).
HAS_IPC = zmq.has("ipc") and os.environ.get("BUS_LOCAL_TCP", "") in ("", "0")
SESSION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,31}")
MAX_IPC_PATH = 100  # sun_path is 108 bytes on Linux (104 on macOS); keep a margin
INFO_FILE = "supervisor.json"
MAX_WAIT = 7 * 86400.0  # the longest wait anything takes: a week (longer ones overflow poll timeouts on some systems)


def engine_name(name: str, what: str) -> str:
    """An engine name given on the command line, checked (UsageError in one line if it is not one)."""
    if not ENGINE_NAME.fullmatch(name):
        raise UsageError(f"{what} {name!r} is not a valid engine name: up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'")
    return name


def default_name(command: tuple[str, ...]) -> str:
    """`python worker.py` -> "worker"; `python -m pkg.job` -> "job"; `./crawl.sh` -> "crawl"."""
    program = os.path.basename(command[0])
    pick = program
    if re.fullmatch(r"python[0-9.]*(\.exe)?", program) and len(command) > 1:
        if command[1] == "-m" and len(command) > 2:
            pick = command[2].rsplit(".", 1)[-1]
        elif not command[1].startswith("-"):
            pick = os.path.basename(command[1])
    stem = os.path.splitext(pick)[0]
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "-", stem).lstrip(".-")[:64]
    if not cleaned:
        raise BusError(f"cannot make an engine name from {command[0]!r}: give one with --name")
    return cleaned


def runtime_base() -> Path:
    explicit = os.environ.get("BUS_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "bus"
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"bus-{user}"


def private_dir(path: Path) -> Path:
    """Create `path` owner-only (0700), or check that an existing one is ours."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise BusError(f"cannot create run directory {path}: {exc.strerror}; set BUS_RUNTIME_DIR") from None
    if hasattr(os, "getuid"):
        st = path.stat()
        if st.st_uid != os.getuid():
            raise BusError(
                f"run directory {path} belongs to uid {st.st_uid}, not to you: "
                "set BUS_RUNTIME_DIR to a directory of your own"
            )
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
    return path


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    dir: Path

    def ipc(self, socket_name: str) -> str:
        return f"ipc://{self.dir / socket_name}"

    @property
    def info_file(self) -> Path:
        return self.dir / INFO_FILE

    @property
    def label(self) -> str:
        return f"session '{self.name}' ({self.dir})"

    def read_info(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return None

    def write_info(self, info: dict[str, Any]) -> None:
        tmp = self.dir / (INFO_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(info, out, indent=2)
        os.replace(tmp, self.info_file)


def local_session(name: str | None = None, *, create: bool = False) -> Session:
    name = name or os.environ.get("BUS_SESSION") or "default"
    if not SESSION_NAME.fullmatch(name):
        raise UsageError(
            f"session name {name!r} is not valid: use up to 32 letters, digits, '_', '.', '-'"
        )
    base = runtime_base()
    session = Session(name, base / name)
    longest = len(str(session.dir / "pull"))
    if HAS_IPC and longest > MAX_IPC_PATH:
        raise BusError(
            f"run directory {session.dir} is too long for ipc sockets ({longest} > {MAX_IPC_PATH} "
            "characters): set BUS_RUNTIME_DIR to a shorter directory"
        )
    if create:
        private_dir(base)
        private_dir(session.dir)
    return session


def state_base() -> Path:
    """Where journals live: on disk, not in the (often RAM-backed) run directory."""
    explicit = os.environ.get("BUS_STATE_DIR")
    if explicit:
        return Path(explicit)
    if os.name == "nt":  # pragma: no cover - Windows
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "bus"
    xdg = os.environ.get("XDG_STATE_HOME")
    return Path(xdg) / "bus" if xdg else Path.home() / ".local" / "state" / "bus"


def journal_path(session: Session) -> Path:
    return state_base() / session.name / "journal.sqlite"


class SessionLock:
    """Held by the supervisor for its lifetime; the OS drops it if the process dies."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._fd = os.open(session.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(self._fd):
            os.close(self._fd)
            info = session.read_info() or {}
            pid = info.get("pid", "?")
            raise BusError(
                f"{session.label} is in use by another supervisor (pid {pid}): "
                f"stop it with `bus down {session.name}`, or use --session OTHER"
            )

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the lock
            self._fd = -1


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class Address:
    """Where to reach a supervisor: its control endpoint, and PUB if known."""

    control: str
    pub: str | None
    label: str
    session: Session | None = None
    keys: ClientKeys | None = None  # CURVE keys for tcp (BUS_SERVER_KEY, BUS_KEY)
    token: str | None = None        # local TCP (no ipc): supervisor.json's owner token, which `spawn` needs

    @property
    def located(self) -> bool:
        """False for a local session without ipc whose supervisor had not written supervisor.json
        yet: its ports are read when a client first asks (`locate`), as an ipc client connects
        before the supervisor binds."""
        return bool(self.control)


def locate(address: Address, wait: float | None) -> Address | None:
    """`address` with its endpoints: itself if known, else (local TCP) those of the
    supervisor.json a live supervisor of its session writes within `wait` seconds (None:
    a week), or None."""
    if address.located:
        return address
    assert address.session is not None
    info = live_info(address.session, MAX_WAIT if wait is None else wait)
    return None if info is None else _local_tcp(address.session, info)


def relocatable(address: Address) -> Address:
    """For a client whose supervisor stopped answering: a local TCP session's address to read
    again from supervisor.json at the next request (a restarted supervisor may have other
    ports); any other address as it is."""
    if HAS_IPC or address.session is None or not address.located:
        return address
    return _unlocated(address.session)


def _unlocated(session: Session) -> Address:
    return Address(control="", pub=None, label=session.label, session=session)


def _local_tcp(session: Session, info: dict[str, Any]) -> Address:
    return Address(control=info["control"][0], pub=info["pub"][0], label=session.label, session=session, token=info.get("token"))


def resolve(address: str | None) -> Address:
    """`None` or a session name -> the local session; `tcp://HOST:PORT` -> remote
    control socket (PUB found through it), with CURVE keys from the environment
    if set; a directory -> that run directory. Without ipc (Windows, BUS_LOCAL_TCP=1)
    the local endpoints are read from supervisor.json of a live supervisor; without
    one yet, the Address is not `located`: its clients read the file at their first
    request (`locate`), as a client of ipc endpoints may connect before the
    supervisor binds."""
    if address and address.startswith("tcp://"):
        tcp_address(address, "address")
        return Address(control=address, pub=None, label=address, keys=client_keys())
    if address and "://" in address:
        raise UsageError(
            f"address {address!r} is not understood: give a session name, a run directory, or tcp://HOST:PORT"
        )
    if address and ("/" in address or os.sep in address):
        path = Path(address)
        session = Session(path.name, path)
    else:
        session = local_session(address)
    if HAS_IPC:
        return Address(control=session.ipc("ctl"), pub=session.ipc("pub"), label=session.label, session=session)
    unlocated = _unlocated(session)  # (Windows, or BUS_LOCAL_TCP=1: tcp endpoints from the info file, when there is one)
    return locate(unlocated, 0.0) or unlocated


INFO_POLL = 0.02  # seconds between looks at supervisor.json while waiting for one


def live_info(session: Session, wait: float = 0.0) -> dict[str, Any] | None:
    """supervisor.json of a supervisor that runs (one left by a killed supervisor is not),
    waiting up to `wait` seconds for one."""
    deadline = time.monotonic() + min(wait, MAX_WAIT)
    while True:
        info = session.read_info()
        if info is not None and pid_alive(info.get("pid")) and info.get("control") and info.get("pub"):
            return info
        if time.monotonic() >= deadline:
            return None
        time.sleep(INFO_POLL)


def pid_alive(pid: Any) -> bool:
    """Is there a process `pid`? (Windows: assumed, there is no signal 0 to ask with.)"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TCP_ADDRESS = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|\*|[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?):(\d{1,5})")


def tcp_address(text: str, what: str, *, bind: bool = False) -> tuple[str, int]:
    """(host, port) of `tcp://HOST:PORT`, checked before anything binds or connects:
    a host name, an IPv4 address or a bracketed IPv6 one (`*` only to bind), and a
    port from 1 to 65535 (0, any free port, only to bind). UsageError in one line if not."""
    match = TCP_ADDRESS.fullmatch(text)
    port = int(match.group(2)) if match else -1
    if match is None or not (0 if bind else 1) <= port <= 65535 or (match.group(1) == "*" and not bind):
        example = "tcp://0.0.0.0:7010" if bind else "tcp://10.0.0.5:7010"
        ports = "0 (any free port) to 65535" if bind else "1 to 65535"
        raise UsageError(f"{what} {text!r} is not an address like {example} (a host, then a port from {ports})")
    return match.group(1), port


def tcp_endpoints(listen: str) -> dict[str, str]:
    """`tcp://HOST:PORT` -> control on PORT, pub on PORT+1, pull on PORT+2 (port 0: any free ports)."""
    host, port = tcp_address(listen, "--listen", bind=True)
    if port > 65533:
        raise UsageError(f"--listen {listen!r}: the port must be at most 65533 (pub and pull use the next two)")
    if port == 0:
        return {name: f"tcp://{host}:*" for name in ("control", "pub", "pull")}
    return {"control": f"tcp://{host}:{port}", "pub": f"tcp://{host}:{port + 1}", "pull": f"tcp://{host}:{port + 2}"}
