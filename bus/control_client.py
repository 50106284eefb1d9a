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
from .runtime import Address, locate, relocatable


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
        if self._sock is None:
            start = time.monotonic()
            found = locate(self.address, wait)
            if found is None:
                raise no_answer(self.address, wait)
            self._connect(found)
            wait = None if wait is None else max(0.0, wait - (time.monotonic() - start))
        assert self._sock is not None and self._watch is not None
        req_id = next(self._ids)
        if op == "spawn" and self.address.token:
            args = {**args, "token": self.address.token}  # (local TCP: proves we may read the owner's supervisor.json)
        self._sock.send_multipart([b"", encode_request(op, req_id, **args)])
        deadline = None if wait is None else time.monotonic() + wait
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
        self.close()
        self.address = relocatable(self.address)  # (local TCP: read supervisor.json again at the next request)
        if self.address.located:
            self._connect(self.address)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._sock is not None:
            self._sock.close(linger=0)
        self._sock = self._watch = None


class AsyncControlClient:
    """ControlClient for asyncio. Requests from several tasks take turns (one DEALER, one reply at a time)."""

    def __init__(self, ctx: zmq.asyncio.Context, address: Address, *, timeout: float = 5.0) -> None:
        self.ctx = ctx
        self.address = address
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sock: zmq.asyncio.Socket | None = sockets.dealer(ctx, address.control, keys=address.keys) if address.located else None
        self._turn: asyncio.Lock | None = None  # (made in the loop that first uses it)

    async def request(self, op: str, *, timeout: float | None = -1.0, **args: Any) -> tuple[dict[str, Any], list[Any]]:
        """As ControlClient.request: (reply, extra frames); `timeout=None` waits for ever."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            return await self._request(op, timeout, args)

    async def _request(self, op: str, timeout: float | None, args: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        wait = self.timeout if timeout == -1.0 else timeout
        if self._sock is None:
            start = time.monotonic()
            found = await asyncio.to_thread(locate, self.address, wait)
            if found is None:
                raise no_answer(self.address, wait)
            self.address = found
            self._sock = sockets.dealer(self.ctx, found.control, keys=found.keys)
            wait = None if wait is None else max(0.0, wait - (time.monotonic() - start))
        req_id = next(self._ids)
        if op == "spawn" and self.address.token:
            args = {**args, "token": self.address.token}
        await self._sock.send_multipart([b"", encode_request(op, req_id, **args)])
        deadline = None if wait is None else time.monotonic() + wait
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
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None


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
        f"no answer from a supervisor at {address.label} within {wait:g}s: "
        "is one running there? (start one with `bus up`)"
    )


def pick_endpoint(endpoints: dict[str, list[str]], role: str, control: str) -> str:
    """The `role` endpoint (pub, pull) of a hello's `endpoints`, reachable the way `control`
    was (PROTOCOL.md section 7, "Which endpoint to use"): over ipc the ipc entry; over TCP
    the entry at the index of the `control` entry with the port `control` reached (the
    lists are parallel: the local one, then --listen's), or the last one if none has it (a
    port forward), with a wildcard host replaced by the host `control` named."""
    listed = endpoints.get(role) or []
    reached = _host_port(control)
    if reached is None:
        for endpoint in listed:
            if endpoint.startswith("ipc://"):
                return endpoint
        raise BusError(f"the supervisor at {control} lists no local {role} endpoint: {listed}")
    ports = [bound[1] if (bound := _host_port(entry)) else None for entry in endpoints.get("control") or []]
    chosen = listed[ports.index(reached[1])] if reached[1] in ports and ports.index(reached[1]) < len(listed) else (listed[-1] if listed else "")
    bound = _host_port(chosen)
    if bound is None:
        raise BusError(f"the supervisor at {control} lists no {role} endpoint reachable over TCP: {listed}")
    return f"tcp://{reached[0] if bound[0] in WILDCARDS else bound[0]}:{bound[1]}"


WILDCARDS = ("0.0.0.0", "[::]", "*")


def _host_port(endpoint: str) -> tuple[str, str] | None:
    match = re.fullmatch(r"tcp://(\[[^\]]+\]|[^:/]+):(\d+)/?", endpoint)
    return (match.group(1), match.group(2)) if match else None
