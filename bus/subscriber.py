"""Subscribe to a supervisor and get every event, in order, once.

    from bus import Subscriber

    with Subscriber() as sub:                 # the local default session
        for event in sub:                     # ends after the run's sup.stop
            print(event.gseq, event.kind, event.engine)

How it works (the ZeroMQ guide's Clone pattern): subscribe on PUB, wait for
the supervisor's `welcome` (proof the subscription is live, and the newest
gseq at that moment), fetch what came before from the supervisor's history
over the control socket (all of it, the last N, or none), then follow live.
Live events already seen are dropped; when global sequence numbers jump (the
publisher dropped messages for a slow subscriber), the missing range is
fetched from history before going on. Whatever history no longer holds is
recorded in `lost`, never silently skipped.

A Subscriber owns zmq sockets: use it from one thread (make one per thread).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable, Iterator

import zmq

from . import sockets
from .control_client import ControlClient
from .errors import BusError, NotRunning
from .protocol import AnyEvent, RemoteProtocolError, Welcome, decode_published, split_batch
from .runtime import Address, resolve

ALL = "all"


class Subscriber:
    def __init__(
        self,
        address: str | Address | None = None,
        *,
        engines: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        history: int | str | None = ALL,
        ctx: zmq.Context | None = None,
        timeout: float = 5.0,
        connect_timeout: float | None = None,
    ) -> None:
        """`history`: "all" (everything the supervisor holds), N (the last N matching
        events) or None (live only). `timeout` bounds each control request;
        `connect_timeout` bounds the wait for a supervisor to answer (None: wait)."""
        self.address = address if isinstance(address, Address) else resolve(address)
        self.engines = frozenset(engines) if engines else None
        self.kinds = frozenset(kinds) if kinds else None
        if not (history in (ALL, None) or (isinstance(history, int) and history >= 0)):
            raise BusError(f"history must be 'all', a number >= 0 or None, got {history!r}")
        self.history = history
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.control = ControlClient(self.ctx, self.address, timeout=timeout)
        self.connect_timeout = connect_timeout
        self.run: str | None = None         # id of the supervisor run we follow
        self.lost: list[tuple[int, int]] = []  # gseq ranges history could not give back
        self.rejected = 0                    # messages from PUB we could not decode
        self.ended = False                   # the run's sup.stop was delivered
        self._next: int | None = None        # gseq expected next
        self._early: list[AnyEvent] = []     # live events that came before the welcome
        self._ready: deque[AnyEvent] = deque()
        self._sub: zmq.Socket | None = None
        if self.address.pub is not None:  # known (local session): subscribe now, not at first recv
            self._sub = sockets.sub(self.ctx, self.address.pub)

    # -- public ----------------------------------------------------------------

    def __iter__(self) -> Iterator[AnyEvent]:
        while True:
            event = self.recv(timeout=None)
            if event is None:
                return
            yield event

    def recv(self, timeout: float | None = None) -> AnyEvent | None:
        """The next event; None once the run has ended. Raises TimeoutError."""
        waited = self.connect_timeout if self._next is None and timeout is None else timeout
        sub = self._sub or self._connect(waited)
        while not self._ready:
            if self.ended:
                return None
            if not sub.poll(None if waited is None else int(waited * 1000)):
                raise TimeoutError(f"no event from {self.address.label} within {waited:g}s")
            for _ in range(1000):
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_message(frames)
        return self._ready.popleft()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the subscription is live (the welcome came); TimeoutError if not."""
        sub = self._sub or self._connect(timeout)
        while self._next is None:
            if not sub.poll(None if timeout is None else int(timeout * 1000)):
                raise TimeoutError(f"no supervisor answered at {self.address.label} within {timeout:g}s")
            self._on_message(sub.recv_multipart())

    def _connect(self, timeout: float | None) -> zmq.Socket:
        try:
            endpoint = self.control.pub_endpoint(timeout=timeout)
        except NotRunning as exc:
            raise TimeoutError(str(exc)) from None
        self._sub = sockets.sub(self.ctx, endpoint)
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

    # -- the catch-up --------------------------------------------------------------

    def _on_message(self, frames: list[bytes]) -> None:
        try:
            event = decode_published(frames)
        except RemoteProtocolError:
            self.rejected += 1
            return
        if isinstance(event, Welcome):
            if event.run != self.run:
                self._start(event)
            return
        if self._next is None:
            self._early.append(event)
        else:
            self._live(event)

    def _start(self, welcome: Welcome) -> None:
        """First welcome of a run: catch up from history, then replay early arrivals."""
        self.run, self.ended = welcome.run, False
        if self.history == ALL:
            self._next = 1
            self._fill(0, welcome.last)
        else:
            count = self.history or 0
            if count:
                self._accept(self._fetch(0, welcome.last, last=count))
            self._next = welcome.last + 1
        early, self._early = self._early, []
        for event in early:
            self._live(event)

    def _live(self, event: AnyEvent) -> None:
        gseq = event.gseq
        assert self._next is not None
        if gseq is None or gseq < self._next:
            return  # a duplicate (or an event of an older run)
        if gseq > self._next:
            self._fill(self._next - 1, gseq - 1)
        self._accept([event])

    def _fill(self, after: int, until: int) -> None:
        if until > after:
            self._accept(self._fetch(after, until))
        if self._next is not None and not self.ended:
            self._next = max(self._next, until + 1)  # filtered-out events leave no trace

    def _accept(self, events: list[AnyEvent]) -> None:
        for event in events:
            if event.gseq is not None and self._next is not None and event.gseq < self._next:
                continue
            if event.gseq is not None:
                self._next = event.gseq + 1
            if self._wanted(event):
                self._ready.append(event)
            if event.kind == "sup.stop":
                self.ended = True
                return

    def _wanted(self, event: AnyEvent) -> bool:
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.engines is not None:
            name = event.engine
            return name in self.engines or name.split(".", 1)[0] in self.engines
        return True

    def _fetch(self, after: int, until: int, last: int | None = None) -> list[AnyEvent]:
        """Events after < gseq <= until from history, page by page; records what is gone."""
        kinds = sorted(self.kinds | {"sup.stop"}) if self.kinds is not None else None
        events: list[AnyEvent] = []
        first_page = True
        while True:
            reply, frames = self.control.request("history", after=after, until=until, last=last, kinds=kinds)
            if first_page and last is None and reply["first"] > after + 1:
                gone_until = min(until, reply["first"] - 1) if reply["first"] else until
                self.lost.append((after + 1, gone_until))
            first_page = False
            try:
                events.extend(split_batch(frames, reply["frames"]))
            except RemoteProtocolError as exc:
                raise BusError(f"history from {self.address.label} is garbled: {exc}") from None
            if not reply["more"]:
                return events
            after, last = reply["next"], None
