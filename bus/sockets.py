"""The one module that opens zmq sockets, so options are set the same way everywhere.

Every socket gets an explicit linger (libzmq's default, forever, makes
`Context.term()` hang on unsent messages). Callers own the Context: one per
process, made at the entry point, never shared across fork.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Iterable

import zmq

from .errors import BusError
from .protocol.limits import MAX_BLOB, MAX_HEADER

if TYPE_CHECKING:
    from .keys import ClientKeys, Security

# High-water marks count messages, not bytes (see docs/PROTOCOL.md, "Flow").
PUB_HWM = 10_000
# PULL's is the per-sender byte budget: each engine connection queues at most
# PULL_HWM messages in libzmq, and a queued message costs max(its size, about
# 8 KiB: the receive buffer it arrived in; bench/pipe_cost.py), so an SDK engine
# (batches of at most 64 KiB) holds at most 16 MiB of the supervisor's memory in
# events; larger screenshots count 256 each (its crash spool bounds those it sends).
PULL_HWM = 256
PUSH_HWM = 1_000
SUB_HWM = 100_000
CONTROL_REPLY_HWM = 8
LOCAL_RECONNECT_MS = 20
HANDSHAKE_MS = 10_000  # a bound socket closes a connection that has not finished its handshake by then (libzmq: 30 s)
# Dead peers on TCP (a host that vanished, a NAT or firewall that forgot the connection):
# every TCP connection, both ways, sends a ZMTP PING every HEARTBEAT_MS and is dropped
# after HEARTBEAT_TIMEOUT_MS without traffic (a client then reconnects); TCP keepalive
# underneath (first probe after KEEPALIVE_IDLE s, then every KEEPALIVE_INTVL s, KEEPALIVE_CNT tries).
HEARTBEAT_MS = 2_000
HEARTBEAT_TIMEOUT_MS = 10_000
KEEPALIVE_IDLE, KEEPALIVE_INTVL, KEEPALIVE_CNT = 30, 10, 3
# ZMQ_MAXMSGSIZE per bound socket: a peer sending a bigger frame is disconnected
# by libzmq before the frame is buffered. Frames up to it are read and, if over
# the protocol's own limits, counted as rejects (see docs/SECURITY.md).
MAX_FRAME = {"pull": MAX_BLOB + MAX_HEADER, "control": MAX_HEADER, "pub": 64 * 1024}


def bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind and return the real endpoint (with the port chosen for tcp port 0)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EADDRINUSE:
            raise BusError(f"{endpoint} is already in use: stop what holds it or choose another address") from None
        if exc.errno in (zmq.EADDRNOTAVAIL, errno.ENODEV):
            raise BusError(f"cannot bind {endpoint}: that address is not on this host (listen on one of its own addresses, or 0.0.0.0)") from None
        raise BusError(f"cannot bind {endpoint}: {exc.strerror}") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def _socket(ctx: zmq.Context, kind: int, linger_ms: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, linger_ms)
    return sock


def _bind_all(sock: zmq.Socket, name: str, local: Iterable[str], remote: Iterable[str], security: Security | None) -> list[str]:
    """Bind the local endpoints, then (as a CURVE server, if there are keys) the remote ones.
    A bind that fails closes the socket (an open one would make Context.term() wait for ever)."""
    try:
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME[name])
        sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        bound = [bind(sock, e) for e in local]
        remote = list(remote)
        if remote:
            keep_alive(sock)
        if remote and security is not None:
            security.apply(sock, name)
        return bound + [bind(sock, e) for e in remote]
    except BaseException:
        sock.close(linger=0)
        raise


def xpub(ctx: zmq.Context, local: Iterable[str], remote: Iterable[str] = (), *, security: Security | None = None, linger_ms: int = 1000) -> tuple[zmq.Socket, list[str]]:
    """The supervisor's publisher. XPUB (verbose) so it sees every subscription
    and can answer each with a welcome (no slow-joiner losses)."""
    sock = _socket(ctx, zmq.XPUB, linger_ms)
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    sock.setsockopt(zmq.SNDHWM, PUB_HWM)
    return sock, _bind_all(sock, "pub", local, remote, security)


def pull(ctx: zmq.Context, local: Iterable[str], remote: Iterable[str] = (), *, security: Security | None = None) -> tuple[zmq.Socket, list[str]]:
    sock = _socket(ctx, zmq.PULL, 0)
    sock.setsockopt(zmq.RCVHWM, PULL_HWM)
    return sock, _bind_all(sock, "pull", local, remote, security)


def router(ctx: zmq.Context, local: Iterable[str], remote: Iterable[str] = (), *, security: Security | None = None) -> tuple[zmq.Socket, list[str]]:
    sock = _socket(ctx, zmq.ROUTER, 500)
    # A peer that asks and never reads gets at most this many replies (up to
    # 32 MiB each) queued in libzmq; the next one waits in the supervisor with
    # that peer's later requests behind it (supervisor/replies.py), so it cannot
    # pile history replies up in our memory, and no reply is ever dropped silently.
    sock.setsockopt(zmq.SNDHWM, CONTROL_REPLY_HWM)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full pipe raises EAGAIN instead of dropping the reply (supervisor/replies.py)
    return sock, _bind_all(sock, "control", local, remote, security)


def push(ctx: zmq.Context, endpoint: str, *, linger_ms: int, hwm: int = PUSH_HWM, keys: ClientKeys | None = None) -> zmq.Socket:
    sock = _socket(ctx, zmq.PUSH, linger_ms)
    sock.setsockopt(zmq.SNDHWM, hwm)
    return _client(sock, endpoint, keys)


def keep_alive(sock: zmq.Socket) -> None:
    """Notice a dead peer on TCP: ZMTP heartbeats and TCP keepalive (the timings above)."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE_INTVL)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, KEEPALIVE_CNT)


def _client(sock: zmq.Socket, endpoint: str, keys: ClientKeys | None) -> zmq.Socket:
    if endpoint.startswith("tcp://"):
        keep_alive(sock)
    if keys is not None and endpoint.startswith("tcp://"):
        keys.apply(sock)
    if endpoint.startswith("ipc://"):
        # A local supervisor may not exist yet: retry often (a failed local
        # connect is one cheap syscall), so a waiting client joins at once.
        sock.setsockopt(zmq.RECONNECT_IVL, LOCAL_RECONNECT_MS)
    sock.connect(endpoint)
    return sock


def sub(ctx: zmq.Context, endpoint: str, prefixes: Iterable[bytes] = (b"",), *, hwm: int = SUB_HWM, keys: ClientKeys | None = None) -> zmq.Socket:
    sock = _socket(ctx, zmq.SUB, 0)
    sock.setsockopt(zmq.RCVHWM, hwm)
    for prefix in prefixes:
        sock.setsockopt(zmq.SUBSCRIBE, prefix)
    return _client(sock, endpoint, keys)


def dealer(ctx: zmq.Context, endpoint: str, *, keys: ClientKeys | None = None) -> zmq.Socket:
    return _client(_socket(ctx, zmq.DEALER, 0), endpoint, keys)
