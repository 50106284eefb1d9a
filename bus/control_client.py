"""Talk to a supervisor's control socket: one request, one reply, with a timeout."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

import zmq
import zmq.asyncio

from . import exitcodes, sockets
from .errors import BusError, Denied, NotRunning
from .keys import HandshakeWatch
from .protocol import RemoteProtocolError
from .protocol.control import decode_reply, encode_request
from .runtime import INFO_POLL, Address, locate, relocatable


class RequestFailed(BusError):
    """The supervisor answered with an error."""

    def __init__(self, op: str, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        if code == "forbidden":
            self.exit_code = exitcodes.DENIED
        elif code in ("bad-engine", "name-taken", "too-many-engines"):
            self.exit_code = exitcodes.CANNOT_START  # (a spawn: nothing was started)
        else:
            self.exit_code = exitcodes.USAGE if code in ("unknown-engine", "bad-request", "remote", "not-ended", "unknown-queue", "unknown-job", "bad-job") else exitcodes.ENGINE_FAILED


class ControlClient:
    def __init__(self, ctx: zmq.Context, address: Address, *, timeout: float = 5.0) -> None:
        self.ctx = ctx
        self.address = address
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sock: zmq.Socket | None = None  # (none until a local TCP session's supervisor.json names the port)
        self._watch: HandshakeWatch | None = None
        self._closed = False
        if address.located:
            self._connect(address)

    def _connect(self, address: Address) -> zmq.Socket:
        self.address = address
        self._sock = sockets.dealer(self.ctx, address.control, keys=address.keys)
        self._watch = HandshakeWatch(self._sock, address.control, address.keys)
        return self._sock

    def request(self, op: str, *, timeout: float | None = -1.0, **args: Any) -> tuple[dict[str, Any], list[bytes]]:
        """Send `op`; return (reply, extra frames). `timeout=None` waits for ever."""
        wait = self.timeout if timeout == -1.0 else timeout
        if self._closed:
            raise BusError(f"the control client of {self.address.label} is closed")
        deadline = None if wait is None else time.monotonic() + wait
        if self._sock is None:
            found = locate(self.address, wait)
            if found is None:
                raise no_answer(self.address, wait)
            self._connect(found)
        assert self._sock is not None and self._watch is not None
        req_id = next(self._ids)
        if op == "spawn" and self.address.token:
            args = {**args, "token": self.address.token}  # (local TCP: proves we may read the owner's supervisor.json)
        self._sock.send_multipart([b"", encode_request(op, req_id, **args)])
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        if self._watch.monitor is not None:
            poller.register(self._watch.monitor, zmq.POLLIN)
        while True:
            left = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            ready = dict(poller.poll(left))
            if self._sock in ready:
                answer = read_answer(self._sock.recv_multipart(), req_id, op)
                if answer is not None:
                    return answer
                continue
            refused = self._watch.verdict(definite=bool(ready))  # a refused key is final: say so at once
            if refused or not ready:
                self._reset()
                raise Denied(refused) if refused else no_answer(self.address, wait)

    def pub_endpoint(self, *, timeout: float | None = -1.0) -> str:
        """The PUB endpoint to subscribe to: known locally, else asked with `hello`."""
        if self.address.pub is not None:
            return self.address.pub
        reply, _ = self.request("hello", timeout=timeout)
        return pick_endpoint(reply["endpoints"], "pub", self.address.control)

    def _reset(self) -> None:
        # Drop a request nobody answered so it is not delivered later by surprise.
        self._drop()
        self.address = relocatable(self.address)  # (local TCP: read supervisor.json again at the next request)
        if self.address.located:
            self._connect(self.address)

    def _drop(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._sock is not None:
            self._sock.close(linger=0)
        self._sock = self._watch = None

    def close(self) -> None:
        self._closed = True
        self._drop()


class AsyncControlClient:
    """ControlClient for asyncio. Requests from several tasks take turns (one DEALER, one reply at a time)."""

    def __init__(self, ctx: zmq.asyncio.Context, address: Address, *, timeout: float = 5.0) -> None:
        self.ctx = ctx
        self.address = address
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sock: zmq.asyncio.Socket | None = sockets.dealer(ctx, address.control, keys=address.keys) if address.located else None
        self._turn: asyncio.Lock | None = None  # (made in the loop that first uses it)
        self._closed = False

    async def request(self, op: str, *, timeout: float | None = -1.0, **args: Any) -> tuple[dict[str, Any], list[Any]]:
        """As ControlClient.request: (reply, extra frames); `timeout=None` waits for ever."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            return await self._request(op, timeout, args)

    async def _request(self, op: str, timeout: float | None, args: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        wait = self.timeout if timeout == -1.0 else timeout
        if self._closed:
            raise BusError(f"the control client of {self.address.label} is closed")
        deadline = None if wait is None else time.monotonic() + wait
        if self._sock is None:
            found = await _located(self.address, deadline)
            if found is None:
                raise no_answer(self.address, wait)
            self.address = found
            self._sock = sockets.dealer(self.ctx, found.control, keys=found.keys)
        req_id = next(self._ids)
        if op == "spawn" and self.address.token:
            args = {**args, "token": self.address.token}
        await self._sock.send_multipart([b"", encode_request(op, req_id, **args)])
        while True:
            left = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not await self._sock.poll(left):
                # Drop a request nobody answered so it is not delivered later by surprise.
                self._sock.close(linger=0)
                self.address = relocatable(self.address)  # (local TCP: read supervisor.json again at the next request)
                self._sock = sockets.dealer(self.ctx, self.address.control, keys=self.address.keys) if self.address.located else None
                raise no_answer(self.address, wait)
            answer = read_answer(await self._sock.recv_multipart(), req_id, op)
            if answer is not None:
                return answer

    def close(self) -> None:
        self._closed = True
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None


async def _located(address: Address, deadline: float | None) -> Address | None:
    """`locate` on the event loop: supervisor.json looked at every INFO_POLL seconds until
    `deadline` (None: for ever), so a cancelled task stops waiting (a thread would not)."""
    while True:
        found = locate(address, 0.0)
        if found is not None or (deadline is not None and time.monotonic() >= deadline):
            return found
        await asyncio.sleep(INFO_POLL)


def read_answer(frames: list[Any], req_id: int, op: str) -> tuple[dict[str, Any], list[Any]] | None:
    """One message from a control socket: the reply to request `req_id` and its
    extra frames (RequestFailed if it is an error), or None if it is not that reply
    (unreadable, or a late answer to an earlier request that timed out)."""
    body = frames[1:] if frames and frames[0] == b"" else frames
    try:
        reply = decode_reply(body[0])
    except (RemoteProtocolError, IndexError):
        return None
    if reply.get("id") != req_id:
        return None
    if not reply["ok"]:
        raise RequestFailed(op, str(reply.get("code", "")), str(reply.get("error", "")))
    return reply, body[1:]


def no_answer(address: Address, wait: float | None) -> NotRunning:
    return NotRunning(
        f"no answer from a supervisor at {address.label} {'at all' if wait is None else f'within {wait:g}s'}: "
        "is one running there? (start one with `bus up`)"
    )


def pick_endpoint(endpoints: dict[str, list[str]], role: str, control: str) -> str:
    """The `role` endpoint (pub, pull) of a hello's `endpoints`, reachable the way `control`
    was (PROTOCOL.md section 7, "Which endpoint to use"): over ipc the ipc entry; over TCP
    the entry at the index of the `control` entry with the port `control` reached and its
    host (or a wildcard) (the lists are parallel: the local one, then --listen's), else the
    last one (a port forward, a host name), with a wildcard host replaced by the host
    `control` named."""
    listed = endpoints.get(role) or []
    reached = _host_port(control)
    if reached is None:
        for endpoint in listed:
            if endpoint.startswith("ipc://"):
                return endpoint
        raise BusError(f"the supervisor at {control} lists no local {role} endpoint: {listed}")
    chosen = listed[-1] if listed else ""
    for index, entry in enumerate(endpoints.get("control") or []):
        bound = _host_port(entry)
        if bound is not None and bound[1] == reached[1] and index < len(listed) and (bound[0] == reached[0] or bound[0] in WILDCARDS):
            chosen = listed[index]
            break
    bound = _host_port(chosen)
    if bound is None:
        raise BusError(f"the supervisor at {control} lists no {role} endpoint reachable over TCP: {listed}")
    return f"tcp://{reached[0] if bound[0] in WILDCARDS else bound[0]}:{bound[1]}"


WILDCARDS = ("0.0.0.0", "[::]", "*")


def _host_port(endpoint: str) -> tuple[str, str] | None:
    match = re.fullmatch(r"tcp://(\[[^\]]+\]|[^:/]+):(\d+)/?", endpoint)
    return (match.group(1), match.group(2)) if match else None
