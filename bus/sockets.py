"""The one module that opens zmq sockets, so options are set the same way everywhere.

Every socket gets an explicit linger (libzmq's default, forever, makes
`Context.term()` hang on unsent messages). Callers own the Context: one per
process, made at the entry point, never shared across fork.
"""

from __future__ import annotations

from typing import Iterable

import zmq

from .errors import BusError

# High-water marks count messages, not bytes (see docs/PROTOCOL.md, "Flow").
PUB_HWM = 10_000
PULL_HWM = 10_000
PUSH_HWM = 1_000
SUB_HWM = 100_000
LOCAL_RECONNECT_MS = 20


def bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind and return the real endpoint (with the port chosen for tcp port 0)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EADDRINUSE:
            raise BusError(f"{endpoint} is already in use: stop what holds it or choose another address") from None
        raise BusError(f"cannot bind {endpoint}: {exc.strerror}") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def _socket(ctx: zmq.Context, kind: int, linger_ms: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, linger_ms)
    return sock


def xpub(ctx: zmq.Context, endpoints: Iterable[str], *, linger_ms: int = 1000) -> tuple[zmq.Socket, list[str]]:
    """The supervisor's publisher. XPUB (verbose) so it sees every subscription
    and can answer each with a welcome (no slow-joiner losses)."""
    sock = _socket(ctx, zmq.XPUB, linger_ms)
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    sock.setsockopt(zmq.SNDHWM, PUB_HWM)
    return sock, [bind(sock, e) for e in endpoints]


def pull(ctx: zmq.Context, endpoints: Iterable[str]) -> tuple[zmq.Socket, list[str]]:
    sock = _socket(ctx, zmq.PULL, 0)
    sock.setsockopt(zmq.RCVHWM, PULL_HWM)
    return sock, [bind(sock, e) for e in endpoints]


def router(ctx: zmq.Context, endpoints: Iterable[str]) -> tuple[zmq.Socket, list[str]]:
    sock = _socket(ctx, zmq.ROUTER, 500)
    return sock, [bind(sock, e) for e in endpoints]


def push(ctx: zmq.Context, endpoint: str, *, linger_ms: int, hwm: int = PUSH_HWM) -> zmq.Socket:
    sock = _socket(ctx, zmq.PUSH, linger_ms)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.connect(endpoint)
    return sock


def _client(sock: zmq.Socket, endpoint: str) -> zmq.Socket:
    if endpoint.startswith("ipc://"):
        # A local supervisor may not exist yet: retry often (a failed local
        # connect is one cheap syscall), so a waiting client joins at once.
        sock.setsockopt(zmq.RECONNECT_IVL, LOCAL_RECONNECT_MS)
    sock.connect(endpoint)
    return sock


def sub(ctx: zmq.Context, endpoint: str, prefixes: Iterable[bytes] = (b"",), *, hwm: int = SUB_HWM) -> zmq.Socket:
    sock = _socket(ctx, zmq.SUB, 0)
    sock.setsockopt(zmq.RCVHWM, hwm)
    for prefix in prefixes:
        sock.setsockopt(zmq.SUBSCRIBE, prefix)
    return _client(sock, endpoint)


def dealer(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    return _client(_socket(ctx, zmq.DEALER, 0), endpoint)
