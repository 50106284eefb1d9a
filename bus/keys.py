"""CurveZMQ keys: key files, who may do what, and the socket options each side sets.

Key files are ZeroMQ certificates as `zmq.auth` writes them: `NAME.key` holds
the public key (hand it out), `NAME.key_secret` the public and the secret key
(keep it: owner-only, like an ssh key; a secret file others can read is
refused). `bus keygen NAME` makes a pair.

A supervisor with keys (`[security]` in its config, or `--keys DIR`) speaks
CURVE on every TCP endpoint, and pyzmq's ZAP authenticator admits a client by
its public key, per socket, by role:

    engines      may connect to PULL (push events), and ask control `hello` (where to push)
    subscribers  may connect to PUB and ask control read-only questions
    admins       what subscribers may, plus control verbs (start, stop, restart, down), and everything below
    producers    may ask control to `submit` work to a queue and read jobs (`jobs`, `job`), nothing else:
                 a web backend that feeds a queue needs no power to stop engines or run commands (admins),
                 and a reader (subscribers) cannot inject work
    engines      (also) may ask control `take`: work from a queue, for the engine it is

ipc endpoints stay unauthenticated: they live in an owner-only directory
(bus/runtime.py), so only the same user (and root) can reach them.

A client over TCP names the server's public key and its own key pair:
`BUS_SERVER_KEY` (a `.key` file, or the 40-character key itself) and
`BUS_KEY` (its `.key_secret` file), or `--server-key` / `--key` on the command line.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import zmq
import zmq.auth

from .errors import BusError

ROLES = ("engines", "subscribers", "admins", "producers")
# ZAP domain of each bound socket -> the roles it admits.
DOMAINS = {"bus-pull": {"engines"}, "bus-pub": {"subscribers", "admins"}, "bus-control": {"subscribers", "admins", "engines", "producers"}}
SOCKET_DOMAIN = {"pull": "bus-pull", "pub": "bus-pub", "control": "bus-control"}
READ_ONLY_OPS = frozenset({"hello", "status", "snapshot", "history", "runs"})
ENGINE_OPS = frozenset({"hello", "take"})  # an engine key finds the pull endpoint (bus attach), and takes work from a queue
PRODUCER_OPS = frozenset({"hello", "submit", "jobs", "job"})  # work in, and what became of it (docs/PROTOCOL.md section 10)
Z85_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
MAX_DENIED_SHOWN = 10  # the newest refused keys status keeps


class KeyFileError(BusError):
    """A key file is missing, unreadable, not a key, or not private enough."""


def _owner_only(path: Path, what: str) -> None:
    if os.name != "posix":  # pragma: no cover - Windows: the profile directory's ACL protects it
        return
    mode = path.stat().st_mode
    if mode & 0o077:
        raise KeyFileError(f"{what} {path} can be read by others (mode {mode & 0o777:o}): chmod 600 {path}")


def _certificate(path: Path, what: str) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError:
        raise KeyFileError(f"{what} {path}: no such file (make one with `bus keygen NAME`)") from None
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f"{what} {path} is not a ZeroMQ key file (make one with `bus keygen NAME`)") from None
    if not Z85_KEY.fullmatch(public.decode("ascii", "replace")) or (secret is not None and not Z85_KEY.fullmatch(secret.decode("ascii", "replace"))):
        raise KeyFileError(f"{what} {path} holds a malformed key (expected 40 Z85 characters)")
    return public, secret


def load_secret(path: str | Path, what: str = "key file") -> tuple[bytes, bytes]:
    """(public, secret) from a `.key_secret` file, which must be owner-only."""
    path = Path(path).expanduser()
    public, secret = _certificate(path, what)
    if secret is None:
        raise KeyFileError(f"{what} {path} holds only a public key: give the NAME.key_secret file")
    _owner_only(path, what)
    return public, secret


def load_public(spec: str | Path, what: str = "public key") -> bytes:
    """A public key from a key file (public or secret), or the 40-character key itself."""
    text = str(spec)
    if Z85_KEY.fullmatch(text) and not Path(text).exists():
        return text.encode("ascii")
    return _certificate(Path(text).expanduser(), what)[0]


def keygen(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret (owner-only) in `directory` (made 0700)."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}", name):
        raise KeyFileError(f"key name {name!r} is not valid: use up to 64 letters, digits, '_', '.', '-'")
    directory = Path(directory).expanduser()
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path} already exists: remove it first, or choose another name")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        old = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
        try:
            made = zmq.auth.create_certificates(directory, name)
        finally:
            os.umask(old)
        os.chmod(made[0], 0o644)  # the public half is meant to be handed out
        os.chmod(made[1], 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot write keys in {directory}: {exc.strerror}") from None
    return public, secret


# -- the client side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientKeys:
    """What a client sets on a socket to reach a CURVE server."""

    server: bytes   # the server's public key (Z85)
    public: bytes
    secret: bytes
    name: str = ""  # for messages: the key file's name

    def apply(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


def client_keys(server_key: str | None = None, key: str | None = None) -> ClientKeys | None:
    """Keys from arguments, else from BUS_SERVER_KEY / BUS_KEY; None when neither is set."""
    server_key = server_key or os.environ.get("BUS_SERVER_KEY") or None
    key = key or os.environ.get("BUS_KEY") or None
    if server_key is None and key is None:
        return None
    if server_key is None or key is None:
        missing = "the server's public key (--server-key, BUS_SERVER_KEY)" if server_key is None else "your own key (--key, BUS_KEY)"
        raise KeyFileError(f"CURVE needs both keys, and {missing} is missing")
    public, secret = load_secret(key, "key file")
    return ClientKeys(load_public(server_key, "server key"), public, secret, Path(key).name.removesuffix(".key_secret"))


# -- the server side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Security:
    """The supervisor's key pair and the clients it admits, by public key (Z85)."""

    public: bytes
    secret: bytes
    clients: Mapping[bytes, Client] = field(default_factory=dict)

    def may(self, user_id: str | None, op: str) -> bool:
        """May the control client with this ZAP User-Id ask `op`? None: a local (ipc) client."""
        if user_id is None:
            return True
        client = self.clients.get(user_id.encode("ascii", "replace"))
        if client is None:
            return False
        return "admins" in client.roles or (op in READ_ONLY_OPS and "subscribers" in client.roles) or (op in ENGINE_OPS and "engines" in client.roles) or (op in PRODUCER_OPS and "producers" in client.roles)

    def role_of(self, user_id: str) -> set[str]:
        client = self.clients.get(user_id.encode("ascii", "replace"))
        return set(client.roles) if client else set()

    def name_of(self, user_id: str) -> str:
        client = self.clients.get(user_id.encode("ascii", "replace"))
        return client.name if client else user_id[:8]

    def apply(self, sock: zmq.Socket, socket_name: str) -> None:
        """Make the *next* bind of `sock` a CURVE server under the socket's ZAP domain
        (libzmq copies options at bind time: earlier ipc binds stay NULL)."""
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, SOCKET_DOMAIN[socket_name].encode())


def load_security(base: Path, table: Mapping[str, Any], where: str) -> Security:
    """`[security]` of a config: server_key and, per role, key files or directories of them."""
    if "server_key" not in table:
        raise KeyFileError(f"{where}: server_key is missing (the supervisor's NAME.key_secret; make one with `bus keygen server`)")
    public, secret = load_secret(_path(base, table["server_key"], f"{where}: server_key"), f"{where}: server_key")
    clients: dict[bytes, Client] = {}
    names: dict[str, bytes] = {}
    for role in ROLES:
        entries = table.get(role, [])
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise KeyFileError(f"{where}: {role} must be a list of key files or directories, e.g. {role} = [\"keys/{role}/\"]")
        for name, key in _public_keys(base, entries, f"{where}: {role}"):
            if names.setdefault(name, key) != key:
                raise KeyFileError(f"{where}: two different keys are named {name!r}: rename one file")
            known = clients.get(key)
            clients[key] = Client(known.name, known.roles | {role}) if known else Client(name, frozenset({role}))
    return Security(public, secret, clients)


def keys_dir(directory: str | Path) -> Security:
    """`--keys DIR`: DIR/server.key_secret, and DIR/engines/, DIR/subscribers/, DIR/admins/, DIR/producers/ of public keys."""
    base = Path(directory).expanduser()
    if not base.is_dir():
        raise KeyFileError(f"--keys {directory}: not a directory (see docs/SECURITY.md for its layout)")
    table: dict[str, Any] = {"server_key": "server.key_secret"}
    for role in ROLES:
        if (base / role).is_dir():
            table[role] = [role]
    return load_security(base, table, f"--keys {directory}")


def _path(base: Path, value: Any, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise KeyFileError(f"{what} must be a file name")
    return (base / Path(value).expanduser()).resolve()


def _public_keys(base: Path, entries: Iterable[str], what: str) -> Iterable[tuple[str, bytes]]:
    for entry in entries:
        if Z85_KEY.fullmatch(entry) and not (base / entry).exists():
            yield f"key-{entry[:8]}", entry.encode("ascii")
            continue
        path = _path(base, entry, what)
        if path.is_dir():
            for file in sorted(path.glob("*.key")):
                yield file.stem, _certificate(file, what)[0]
        else:
            yield path.name.removesuffix(".key_secret").removesuffix(".key"), _certificate(path, what)[0]


class Gatekeeper:
    """The ZAP side: pyzmq's ThreadAuthenticator with one callback for every domain,
    counting the keys it refuses (status shows them: a client knocking with a key
    nobody added is the first thing an operator wants to see)."""

    def __init__(self, ctx: zmq.Context, security: Security) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self.security = security
        self.refused: dict[str, int] = {}  # domain -> keys refused
        self.last_refused: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._auth = ThreadAuthenticator(ctx)
        self._auth.start()
        for domain in DOMAINS:
            self._auth.configure_curve_callback(domain, self)

    def callback(self, domain: str, key: bytes) -> bool:
        client = self.security.clients.get(key)
        if client is not None and client.roles & DOMAINS.get(domain, set()):
            return True
        with self._lock:
            self.refused[domain] = self.refused.get(domain, 0) + 1
            self.last_refused.append({"domain": domain, "key": key.decode("ascii", "replace"), "name": client.name if client else None, "at": time.time()})
            del self.last_refused[:-MAX_DENIED_SHOWN]
        return False

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {"refused": dict(self.refused), "last_refused": list(self.last_refused)}

    def stop(self) -> None:
        self._auth.stop()


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


_monitors = itertools.count(1)
# The socket-monitor events of a TCP handshake that failed: no key, a wrong key, a key refused.
HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH


def monitor_messages(monitor: zmq.Socket, limit: int = 10_000) -> list[tuple[int, int, bytes]]:
    """(event id, value, endpoint) of the events waiting on a socket monitor, without
    blocking (libzmq sends each as [event id (u16) + value (u32), endpoint]). The
    value is the connection's fd for ACCEPTED and DISCONNECTED, an errno or
    protocol code for a failed handshake."""
    events = []
    while len(events) < limit:
        try:
            frames = monitor.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            break
        if frames and len(frames[0]) >= 6:
            events.append((int.from_bytes(frames[0][:2], "little"), int.from_bytes(frames[0][2:6], "little"), frames[1] if len(frames) > 1 else b""))
    return events


def monitor_events(monitor: zmq.Socket) -> list[int]:
    """The event ids waiting on a socket monitor, without blocking."""
    return [event for event, _, _ in monitor_messages(monitor)]


def describe_failure(event: int, where: str, keys: ClientKeys | None, *, definite: bool = False) -> str | None:
    """Why a handshake with `where` failed (a monitor event), in one line for the user.
    `definite`: None unless retrying cannot cure it (a key refused, keys missing or
    not wanted), rather than a supervisor going away mid-handshake."""
    if keys is None:  # libzmq reports a mechanism mismatch as either PROTOCOL or NO_DETAIL
        return (f"the supervisor at {where} requires CURVE keys: give --server-key SERVER.key and --key YOURS.key_secret "
                "(or set BUS_SERVER_KEY and BUS_KEY)")
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"the supervisor at {where} refused key {keys.name!r}: "
                "ask its operator to add your public key (NAME.key) to the role you need (docs/SECURITY.md)")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return f"the supervisor at {where} does not use keys: drop --server-key/--key (BUS_SERVER_KEY/BUS_KEY)"
    if definite:
        return None
    return f"the handshake with {where} failed: is the server key you gave that supervisor's public key?"


class HandshakeWatch:
    """Watches a client socket's TCP handshakes, so a request nobody answered can
    say why: the supervisor wants keys, refused ours, or has another public key."""

    def __init__(self, sock: zmq.Socket, endpoint: str, keys: ClientKeys | None) -> None:
        self.endpoint, self.keys = endpoint, keys
        self.monitor: zmq.Socket | None = None  # readable when a handshake failed
        self.last: int | None = None            # the newest failure's monitor event
        if endpoint.startswith("tcp://"):
            address = f"inproc://bus-handshake-{os.getpid()}-{next(_monitors)}"
            sock.monitor(address, HANDSHAKE_FAILED)
            # A plain (sync) socket even for an asyncio one: it is only ever read without waiting.
            self.monitor = zmq.Context.shadow(sock.context.underlying).socket(zmq.PAIR)
            self.monitor.setsockopt(zmq.LINGER, 0)
            self.monitor.connect(address)

    def verdict(self, *, definite: bool = False) -> str | None:
        """Why the handshake failed (the newest failure), or None if none did.
        `definite`: only a failure that retrying cannot cure (a key refused, keys
        missing or not wanted), not one that may be a supervisor going away mid-handshake."""
        events = monitor_events(self.monitor) if self.monitor is not None else []
        if events:
            self.last = events[-1]
        if self.last is None:
            return None
        return describe_failure(self.last, self.endpoint, self.keys, definite=definite)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close(linger=0)
            self.monitor = None
