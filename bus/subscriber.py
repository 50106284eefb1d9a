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
all of it. A supervisor gone for good is said (SupervisorGone), and a run cut
short is recorded in `cut` (bus/follow.py has the rules both drivers share).

A subscriber owns zmq sockets: use one from one thread (or one event loop).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Iterable, Iterator

import zmq
import zmq.asyncio

from . import sockets
from .catchup import ALL
from .control_client import AsyncControlClient, ControlClient, RequestFailed, pick_endpoint
from .errors import NotRunning
from .follow import GONE_AFTER, QUIET, Following, SupervisorGone
from .keys import HandshakeWatch
from .protocol import AnyEvent
from .runtime import Address

__all__ = ["ALL", "AsyncSubscriber", "Subscriber", "SupervisorGone"]


class Subscriber(Following):
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
        gone_after: float | None = GONE_AFTER,
    ) -> None:
        super().__init__(address, engines=engines, kinds=kinds, history=history, since=since, timeout=timeout, connect_timeout=connect_timeout, hwm=hwm, gone_after=gone_after)
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.control = ControlClient(self.ctx, self.address, timeout=timeout)
        self._sub: zmq.Socket | None = None
        if self.address.pub is not None:  # known (local session): subscribe now, not at first recv
            self._subscribe(self.address.pub)

    def __iter__(self) -> Iterator[AnyEvent]:
        while True:
            event = self.recv(timeout=None)
            if event is None:
                return
            yield event

    def recv(self, timeout: float | None = None) -> AnyEvent | None:
        """The next event; None once the run has ended. Raises TimeoutError, SupervisorGone,
        Denied (the supervisor refused our key for subscribing)."""
        waited = self.connect_timeout if self.catchup.run is None and timeout is None else timeout
        deadline = None if waited is None else time.monotonic() + waited
        sub = self._sub or self._connect(waited)
        ready = self.catchup.ready
        while not ready:
            if self.catchup.need is not None:
                self._fetch(deadline, waited)
                continue
            if self.catchup.ended:
                if self._done_due():
                    self._report(done=True)
                return None
            if not sub.poll(self._wait_ms(deadline)):
                self._refused_key()
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no event from {self.address.label} within {waited:g}s")
                if self._quiet_for() >= QUIET:
                    self._probe()
                continue
            self._heard = time.monotonic()
            self._answered()  # what comes on SUB proves it is there
            for _ in range(1000):
                try:
                    self.catchup.feed(sub.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
            if self._report_due():
                self._report()
        event = ready.popleft()
        if self._done_due():  # sup.stop handed out: say so now, whether or not recv is called again
            self._report(done=True)
        return event

    def holds(self) -> bool:
        """True when `recv` has an event at hand, without waiting for the network."""
        return bool(self.catchup.ready)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the subscription is live (welcomed, history fetched); TimeoutError if not."""
        try:
            sub = self._sub or self._connect(timeout)
        except TimeoutError:
            if timeout is None:
                raise
            raise TimeoutError(f"no supervisor answered at {self.address.label} within {timeout:g}s") from None
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.catchup.live:
            if self.catchup.need is not None:
                self._fetch(deadline, timeout)
                continue
            left = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            if not sub.poll(int(left * 1000) + 1):
                self._refused_key()
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no supervisor answered at {self.address.label} within {timeout:g}s")
                continue
            self.catchup.feed(sub.recv_multipart())

    def snapshot(self) -> dict[str, Any]:
        """The supervisor's current state of every engine (see docs/PROTOCOL.md, `snapshot`)."""
        reply, _ = self.control.request("snapshot")
        return reply

    def _fetch(self, deadline: float | None, waited: float | None) -> None:
        assert self.catchup.need is not None
        try:
            reply, frames = self.control.request("history", **self._history_args(self.catchup.need))
        except RequestFailed as exc:
            self._refused(exc)
            return
        except NotRunning:
            if not self._from_journal():  # the supervisor went away meanwhile: its journal is here
                self._no_answer()  # (SupervisorGone once that lasted); else asked again
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no answer from {self.address.label} within {waited:g}s") from None
            return
        self._answered()
        self._give(reply, frames)

    def _probe(self) -> None:
        self._heard = time.monotonic()  # the next probe after another quiet spell
        if not self.catchup.live:
            return
        try:
            hello, _ = self.control.request("hello", timeout=min(self.timeout, QUIET), **self._report_args())
        except NotRunning:
            self._from_journal()
            self._heard = time.monotonic()  # the next probe a quiet spell after this one gave up
            self._no_answer()
            return
        self._answered(hello)
        self.catchup.probe(hello)

    def _report(self, done: bool = False) -> None:
        """Tell the supervisor how far we are (it serves an ended run to those still behind)."""
        try:
            hello, _ = self.control.request("hello", timeout=min(self.timeout, QUIET), **self._report_args(done))
        except (NotRunning, RequestFailed):
            return  # said again at the next report; a probe notices a supervisor that is gone
        self._answered(hello)

    def _subscribe(self, endpoint: str) -> zmq.Socket:
        self._sub = sockets.sub(self.ctx, endpoint, hwm=self.hwm, keys=self.address.keys)
        self._watch = HandshakeWatch(self._sub, endpoint, self.address.keys)
        return self._sub

    def _connect(self, timeout: float | None) -> zmq.Socket:
        try:
            endpoint = self.control.pub_endpoint(timeout=timeout)
        except NotRunning as exc:
            self.unreachable = True
            raise TimeoutError(str(exc)) from None
        return self._subscribe(endpoint)

    def close(self) -> None:
        try:
            if self._leaving():  # a supervisor at the end of its run need not wait for us
                self._report(done=True)
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._sub is not None:
            self._sub.close(linger=0)
        self.control.close()
        if self._own_ctx:
            self.ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncSubscriber(Following):
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
        gone_after: float | None = GONE_AFTER,
    ) -> None:
        super().__init__(address, engines=engines, kinds=kinds, history=history, since=since, timeout=timeout, connect_timeout=connect_timeout, hwm=hwm, gone_after=gone_after)
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.asyncio.Context()
        self._ctl = AsyncControlClient(self.ctx, self.address, timeout=timeout)
        self._sub: zmq.asyncio.Socket | None = None
        if self.address.pub is not None:
            self._subscribe(self.address.pub)

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
                await self._fetch(deadline, waited)
                continue
            if self.catchup.ended:
                if self._done_due():
                    await self._report(done=True)
                return None
            if not await sub.poll(self._wait_ms(deadline)):
                self._refused_key()
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no event from {self.address.label} within {waited:g}s")
                if self._quiet_for() >= QUIET:
                    await self._probe()
                continue
            self._heard = time.monotonic()
            self._answered()
            self.catchup.feed(await sub.recv_multipart())
            if self._report_due():
                await self._report()
        event = ready.popleft()
        if self._done_due():
            await self._report(done=True)
        return event

    async def snapshot(self) -> dict[str, Any]:
        reply, _ = await self.request("snapshot")
        return reply

    async def _fetch(self, deadline: float | None, waited: float | None) -> None:
        assert self.catchup.need is not None
        try:
            reply, frames = await self.request("history", **self._history_args(self.catchup.need))
        except RequestFailed as exc:
            self._refused(exc)
            return
        except NotRunning:
            if not await asyncio.to_thread(self._from_journal):  # the supervisor went away meanwhile
                self._no_answer()  # (SupervisorGone once that lasted); else asked again
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no answer from {self.address.label} within {waited:g}s") from None
            return
        self._answered()
        self._give(reply, frames)

    async def _probe(self) -> None:
        self._heard = time.monotonic()  # the next probe after another quiet spell
        if not self.catchup.live:
            return
        try:
            hello, _ = await self.request("hello", timeout=min(self.timeout, QUIET), **self._report_args())
        except NotRunning:
            await asyncio.to_thread(self._from_journal)
            self._heard = time.monotonic()  # the next probe a quiet spell after this one gave up
            self._no_answer()
            return
        self._answered(hello)
        self.catchup.probe(hello)

    async def _report(self, done: bool = False) -> None:
        try:
            hello, _ = await self.request("hello", timeout=min(self.timeout, QUIET), **self._report_args(done))
        except (NotRunning, RequestFailed):
            return
        self._answered(hello)

    async def request(self, op: str, *, timeout: float | None = -1.0, **args: Any) -> tuple[dict[str, Any], list[Any]]:
        """As ControlClient.request: (reply, extra frames); `timeout=None` waits for ever."""
        return await self._ctl.request(op, timeout=timeout, **args)

    async def _connect(self, timeout: float | None) -> zmq.asyncio.Socket:
        try:
            reply, _ = await self.request("hello", timeout=timeout)
        except NotRunning as exc:
            raise TimeoutError(str(exc)) from None
        return self._subscribe(pick_endpoint(reply["endpoints"], "pub", self._ctl.address.control))

    def _subscribe(self, endpoint: str) -> zmq.asyncio.Socket:
        self._sub = sockets.sub(self.ctx, endpoint, hwm=self.hwm, keys=self.address.keys)
        self._watch = HandshakeWatch(self._sub, endpoint, self.address.keys)
        return self._sub

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._sub is not None:
            self._sub.close(linger=0)
        self._ctl.close()
        if self._own_ctx:
            self.ctx.term()

    async def __aenter__(self) -> AsyncSubscriber:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self._leaving():
                await self._report(done=True)
        finally:
            self.close()  # (also when the task was cancelled while saying so)
