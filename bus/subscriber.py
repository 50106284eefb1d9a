"""Subscribe to a supervisor and get every event, in order, once.

    from bus import Subscriber

    with Subscriber() as sub:                 # the local default session
        for event in sub:                     # ends after the run's sup.stop
            print(event.gseq, event.kind, event.engine)

    async with AsyncSubscriber("tcp://10.0.0.5:7010") as sub:
        async for event in sub:
            ...

Both drive the same catch-up (bus/catchup.py): subscribe, wait for the
supervisor's welcome, fetch what came before from its history (all of it, the
newest N, or since a time), then follow live, refilling any gap from history.
`snapshot()` asks for the current state of every engine.

After a second without messages a subscriber asks the supervisor's `hello`
whether more was published than it got (the publisher drops the newest
messages for a subscriber that fell behind, which shows no gap by itself).
When no supervisor answers, a local subscriber reads the rest of its run from
the session's journal, so even one that stalled past the end of the run gets
all of it.

A subscriber owns zmq sockets: use one from one thread (or one event loop).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Iterable, Iterator

import zmq
import zmq.asyncio

from . import sockets
from .catchup import ALL, Catchup, Need
from .control_client import ControlClient, RequestFailed, no_answer, pick_endpoint, read_answer
from .errors import BusError, NotRunning
from .journal import open_journal
from .protocol import AnyEvent, RemoteProtocolError, decode, split_batch
from .protocol.control import encode_request
from .runtime import Address, resolve

QUIET = 1.0  # seconds without a message before asking the supervisor what we may have missed


class _Base:
    def __init__(
        self,
        address: str | Address | None,
        *,
        engines: Iterable[str] | None,
        kinds: Iterable[str] | None,
        history: int | str | None,
        since: float | None,
        timeout: float,
        connect_timeout: float | None,
        hwm: int,
    ) -> None:
        """`history`: "all" (everything the supervisor holds of this run), N (the
        newest N matching events) or None (live only); `since`: events from that
        Unix time on instead. `timeout` bounds each control request;
        `connect_timeout` bounds the wait for a supervisor (None: wait); `hwm`:
        messages queued for us before the publisher drops (then refilled from history)."""
        self.address = address if isinstance(address, Address) else resolve(address)
        if not (history in (ALL, None) or (isinstance(history, int) and history >= 0)):
            raise BusError(f"history must be 'all', a number >= 0 or None, got {history!r}")
        self.catchup = Catchup(history=history, since=since, kinds=kinds, engines=engines)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.hwm = hwm
        self._heard = time.monotonic()  # when the SUB socket last gave us something (or we last probed)
        self.unreachable = False  # the last attempt to reach the supervisor got no answer (a hub shows its upstreams so)

    # What the catch-up knows, for callers.
    @property
    def run(self) -> str | None:
        return self.catchup.run

    @property
    def lost(self) -> list[tuple[int, int | None]]:
        return self.catchup.lost

    @property
    def ended(self) -> bool:
        return self.catchup.ended

    def _quiet_for(self) -> float:
        return time.monotonic() - self._heard

    def _wait_ms(self, deadline: float | None) -> int:
        """How long to poll: until the deadline or the next quiet probe, whichever is first."""
        wait = max(0.0, QUIET - self._quiet_for())
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        return int(wait * 1000) + 1

    @property
    def refills(self) -> int:
        """How many gaps were filled from history (0 for a subscriber that kept up)."""
        return self.catchup.refills

    def _history_args(self, need: Need) -> dict[str, Any]:
        return {"after": need.after, "until": need.until, "last": need.last, "since": need.since, "kinds": self.catchup.history_kinds, "run": self.run}

    def _give(self, reply: dict[str, Any], frames: list[Any]) -> None:
        try:
            events = split_batch(frames, reply["frames"])
        except RemoteProtocolError as exc:
            raise BusError(f"history from {self.address.label} is garbled: {exc}") from None
        self.catchup.give(events, reply)

    def _refused(self, exc: RequestFailed) -> None:
        """History refused: an earlier run's rest that this supervisor has no journal of."""
        if exc.code != "unknown-run":
            raise exc
        self.catchup.unavailable()

    def _from_journal(self) -> bool:
        """No supervisor answers: fetch what is needed (or, if nothing is, the rest
        of our run) from the session's journal on this machine. False if there is none."""
        if self.run is None:
            return False
        try:
            reader = open_journal(self.address)
        except NotRunning:
            return False
        try:
            info = next((r for r in reader.runs() if r.run == self.run), None)
            if info is None:
                return False
            if self.catchup.need is None:
                self.catchup.probe({"run": info.run, "last": info.last})
            while (need := self.catchup.need) is not None:
                entries, reply = reader.page(info.run, after=need.after, until=need.until, last=need.last, since=need.since, kinds=self.catchup.history_kinds)
                self.catchup.give([decode(entry.frames) for entry in entries], reply)
            return True
        finally:
            reader.close()


class Subscriber(_Base):
    def __init__(
        self,
        address: str | Address | None = None,
        *,
        engines: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        history: int | str | None = ALL,
        since: float | None = None,
        ctx: zmq.Context | None = None,
        timeout: float = 5.0,
        connect_timeout: float | None = None,
        hwm: int = sockets.SUB_HWM,
    ) -> None:
        super().__init__(address, engines=engines, kinds=kinds, history=history, since=since, timeout=timeout, connect_timeout=connect_timeout, hwm=hwm)
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.control = ControlClient(self.ctx, self.address, timeout=timeout)
        self._sub: zmq.Socket | None = None
        if self.address.pub is not None:  # known (local session): subscribe now, not at first recv
            self._sub = sockets.sub(self.ctx, self.address.pub, hwm=hwm, keys=self.address.keys)

    def __iter__(self) -> Iterator[AnyEvent]:
        while True:
            event = self.recv(timeout=None)
            if event is None:
                return
            yield event

    def recv(self, timeout: float | None = None) -> AnyEvent | None:
        """The next event; None once the run has ended. Raises TimeoutError."""
        waited = self.connect_timeout if self.catchup.run is None and timeout is None else timeout
        deadline = None if waited is None else time.monotonic() + waited
        sub = self._sub or self._connect(waited)
        ready = self.catchup.ready
        while not ready:
            if self.catchup.need is not None:
                self._fetch()
                continue
            if self.catchup.ended:
                return None
            if not sub.poll(self._wait_ms(deadline)):
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no event from {self.address.label} within {waited:g}s")
                if self._quiet_for() >= QUIET:
                    self._probe()
                continue
            self._heard = time.monotonic()
            self.unreachable = False
            for _ in range(1000):
                try:
                    self.catchup.feed(sub.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
        return ready.popleft()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the subscription is live (welcomed, history fetched); TimeoutError if not."""
        sub = self._sub or self._connect(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.catchup.live:
            if self.catchup.need is not None:
                self._fetch()
                continue
            left = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not sub.poll(left):
                raise TimeoutError(f"no supervisor answered at {self.address.label} within {timeout:g}s")
            self.catchup.feed(sub.recv_multipart())

    def snapshot(self) -> dict[str, Any]:
        """The supervisor's current state of every engine (see docs/PROTOCOL.md, `snapshot`)."""
        reply, _ = self.control.request("snapshot")
        return reply

    def _fetch(self) -> None:
        assert self.catchup.need is not None
        try:
            reply, frames = self.control.request("history", **self._history_args(self.catchup.need))
        except RequestFailed as exc:
            self._refused(exc)
            return
        except NotRunning:
            if not self._from_journal():  # the supervisor went away meanwhile: its journal is here
                raise
            return
        self._give(reply, frames)

    def _probe(self) -> None:
        self._heard = time.monotonic()  # the next probe after another quiet spell
        if not self.catchup.live:
            return
        try:
            hello, _ = self.control.request("hello", timeout=min(self.timeout, QUIET))
        except NotRunning:
            self.unreachable = True
            self._from_journal()
            self._heard = time.monotonic()  # the next probe a quiet spell after this one gave up
            return
        self.unreachable = False
        self.catchup.probe(hello)

    def _connect(self, timeout: float | None) -> zmq.Socket:
        try:
            endpoint = self.control.pub_endpoint(timeout=timeout)
        except NotRunning as exc:
            self.unreachable = True
            raise TimeoutError(str(exc)) from None
        self._sub = sockets.sub(self.ctx, endpoint, hwm=self.hwm, keys=self.address.keys)
        return self._sub

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close(linger=0)
        self.control.close()
        if self._own_ctx:
            self.ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncSubscriber(_Base):
    """The asyncio twin of Subscriber: `async for event in sub`, `await sub.recv()`."""

    def __init__(
        self,
        address: str | Address | None = None,
        *,
        engines: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        history: int | str | None = ALL,
        since: float | None = None,
        ctx: zmq.asyncio.Context | None = None,
        timeout: float = 5.0,
        connect_timeout: float | None = None,
        hwm: int = sockets.SUB_HWM,
    ) -> None:
        super().__init__(address, engines=engines, kinds=kinds, history=history, since=since, timeout=timeout, connect_timeout=connect_timeout, hwm=hwm)
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.asyncio.Context()
        self._ctl = sockets.dealer(self.ctx, self.address.control, keys=self.address.keys)
        self._sub: zmq.asyncio.Socket | None = sockets.sub(self.ctx, self.address.pub, hwm=hwm, keys=self.address.keys) if self.address.pub else None
        self._ids = 0

    def __aiter__(self) -> AsyncIterator[AnyEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[AnyEvent]:
        while (event := await self.recv()) is not None:
            yield event

    async def recv(self, timeout: float | None = None) -> AnyEvent | None:
        """The next event; None once the run has ended. Raises TimeoutError."""
        waited = self.connect_timeout if self.catchup.run is None and timeout is None else timeout
        deadline = None if waited is None else time.monotonic() + waited
        sub = self._sub or await self._connect(waited)
        ready = self.catchup.ready
        while not ready:
            if self.catchup.need is not None:
                await self._fetch()
                continue
            if self.catchup.ended:
                return None
            if not await sub.poll(self._wait_ms(deadline)):
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no event from {self.address.label} within {waited:g}s")
                if self._quiet_for() >= QUIET:
                    await self._probe()
                continue
            self._heard = time.monotonic()
            self.unreachable = False
            self.catchup.feed(await sub.recv_multipart())
        return ready.popleft()

    async def snapshot(self) -> dict[str, Any]:
        reply, _ = await self.request("snapshot")
        return reply

    async def _fetch(self) -> None:
        assert self.catchup.need is not None
        try:
            reply, frames = await self.request("history", **self._history_args(self.catchup.need))
        except RequestFailed as exc:
            self._refused(exc)
            return
        except NotRunning:
            if not await asyncio.to_thread(self._from_journal):  # the supervisor went away meanwhile
                raise
            return
        self._give(reply, frames)

    async def _probe(self) -> None:
        self._heard = time.monotonic()  # the next probe after another quiet spell
        if not self.catchup.live:
            return
        try:
            hello, _ = await self.request("hello", timeout=min(self.timeout, QUIET))
        except NotRunning:
            self.unreachable = True
            await asyncio.to_thread(self._from_journal)
            self._heard = time.monotonic()  # the next probe a quiet spell after this one gave up
            return
        self.unreachable = False
        self.catchup.probe(hello)

    async def request(self, op: str, *, timeout: float | None = -1.0, **args: Any) -> tuple[dict[str, Any], list[Any]]:
        """As ControlClient.request: (reply, extra frames); `timeout=None` waits for ever."""
        wait = self.timeout if timeout == -1.0 else timeout
        self._ids += 1
        req_id = self._ids
        await self._ctl.send_multipart([b"", encode_request(op, req_id, **args)])
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            left = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not await self._ctl.poll(left):
                # Drop a request nobody answered so it is not delivered later by surprise.
                self._ctl.close(linger=0)
                self._ctl = sockets.dealer(self.ctx, self.address.control, keys=self.address.keys)
                raise no_answer(self.address, wait)
            answer = read_answer(await self._ctl.recv_multipart(), req_id, op)
            if answer is not None:
                return answer

    async def _connect(self, timeout: float | None) -> zmq.asyncio.Socket:
        try:
            reply, _ = await self.request("hello", timeout=timeout)
        except NotRunning as exc:
            raise TimeoutError(str(exc)) from None
        self._sub = sockets.sub(self.ctx, pick_endpoint(reply["endpoints"]["pub"], self.address.control), hwm=self.hwm, keys=self.address.keys)
        return self._sub

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close(linger=0)
        self._ctl.close(linger=0)
        if self._own_ctx:
            self.ctx.term()

    async def __aenter__(self) -> AsyncSubscriber:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
