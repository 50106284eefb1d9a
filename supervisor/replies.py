"""Control replies that never vanish: per peer, in order, bounded.

Why: a ROUTER drops a message silently when the peer's pipe is full (its high-water
mark, CONTROL_REPLY_HWM), and libzmq learns that a peer has read only every few
messages, so a client that sends several requests before reading (the protocol
allows it: `id` matches replies to requests) lost most replies (20 pipelined
requests: 8 replies). The ROUTER is therefore ZMQ_ROUTER_MANDATORY: a send to a
full pipe raises EAGAIN, and the reply waits here, with every later request of
that peer behind it (kept as requests, not replies, so a peer that never reads
holds at most one reply in our memory). The loop retries waiting peers every
pass. A peer that is gone (EHOSTUNREACH) loses what waited for it; a peer with
MAX_WAITING requests waiting has its next ones dropped, and counted, as is
anything past MAX_HELD bytes held for all peers together.

A request may also be held (`take` waiting for work, `job` waiting for an end):
its answer is then [] and nothing is sent now; the reply goes later through
`deliver`, behind what already waits for that peer.

`Readers` keeps what subscribers said of how far they are (`hello` with
`subscriber`, `at`, `done`), so a supervisor whose run is over knows whom to wait for.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import Any, Callable

import zmq

MAX_WAITING = 1000             # requests of one peer held while its pipe is full
MAX_PEERS = 1000               # peers with something waiting
MAX_HELD = 128 * 1024 * 1024   # bytes of requests and replies held for all of them

Answer = Callable[[list[bytes], "str | None", list[bytes]], list[Any]]  # (body, who, envelope) -> reply frames ([]: held, see deliver)


class Replies:
    def __init__(self, router: zmq.Socket, answer: Answer, lost: Callable[[list[bytes], list[Any]], None] | None = None) -> None:
        self.router, self.answer = router, answer
        self.lost = lost  # told of each held reply that was queued here and then vanished with its peer (work: the jobs it gave)
        self.waiting: dict[bytes, deque[tuple[list[bytes], Any, int]]] = {}  # identity -> (envelope, reply frames | request, bytes)
        self.held = 0       # bytes held in `waiting`
        self.dropped = 0    # requests dropped: their peer had MAX_WAITING waiting, too many peers waited, or MAX_HELD was reached
        self.vanished = 0   # replies whose peer disconnected before it could take them

    def take(self, envelope: list[bytes], body: list[bytes], who: str | None) -> None:
        """A request: answer it now, or behind what already waits for its peer."""
        peer = envelope[0]
        queue = self.waiting.get(peer)
        if queue is not None:
            size = _size(envelope + body)
            if len(queue) >= MAX_WAITING or self.held + size > MAX_HELD:
                self.dropped += 1
            else:
                queue.append((envelope, _Request(body, who), size))
                self.held += size
            return
        reply = self.answer(body, who, envelope)
        if not reply:
            return  # held: delivered later
        self._queue_or_send(envelope, reply)

    def deliver(self, envelope: list[bytes], reply: list[Any]) -> bool:
        """The reply to a request that was held; False when its peer is gone (the reply is lost)."""
        queue = self.waiting.get(envelope[0])
        if queue is not None:
            size = _size(envelope + reply)
            queue.append((envelope, reply, size))  # (one per held request: bounded by what the peer asked)
            self.held += size
            return True
        return self._queue_or_send(envelope, reply)

    def _queue_or_send(self, envelope: list[bytes], reply: list[Any]) -> bool:
        peer = envelope[0]
        try:
            if self._send(envelope, reply):
                return True
        except _Gone:
            self.vanished += 1
            return False
        size = _size(envelope + reply)
        if len(self.waiting) >= MAX_PEERS or self.held + size > MAX_HELD:
            self.dropped += 1
            return False
        self.waiting[peer] = deque([(envelope, reply, size)])
        self.held += size
        return True

    def flush(self) -> None:
        """Send what waits, peer by peer, in order, while each peer has room."""
        lost: list[tuple[list[bytes], list[Any]]] = []
        for peer in list(self.waiting):
            queue = self.waiting[peer]
            while queue:
                envelope, item, size = queue[0]
                if isinstance(item, _Request):  # its turn: answered now (one reply per peer held at a time)
                    item = self.answer(item.body, item.who, envelope)
                    if not item:  # held: delivered later
                        queue.popleft()
                        self.held -= size
                        continue
                    reply_size = _size(envelope + item)
                    self.held += reply_size - size
                    queue[0] = (envelope, item, size := reply_size)
                try:
                    sent = self._send(envelope, item)
                except _Gone:
                    self.vanished += len(queue)
                    self.held -= sum(held for _, _, held in queue)
                    lost.extend((env, it) for env, it, _ in queue if not isinstance(it, _Request))
                    queue.clear()
                    break
                if not sent:
                    break
                queue.popleft()
                self.held -= size
            if not queue:
                del self.waiting[peer]
        for envelope, reply in lost:  # (told after the pass: what `lost` does may deliver more)
            if self.lost is not None:
                self.lost(envelope, reply)

    def _send(self, envelope: list[bytes], reply: list[Any]) -> bool:
        """True when sent, False when the peer's pipe is full; _Gone when the peer has disconnected."""
        try:
            self.router.send_multipart(envelope + reply, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                raise _Gone() from None
            raise

    def report(self) -> dict[str, int]:
        return {"waiting": sum(len(q) for q in self.waiting.values()), "held_bytes": self.held, "dropped": self.dropped, "vanished": self.vanished}


def _size(frames: list[Any]) -> int:
    return sum(len(f) for f in frames)


class _Request:
    """A request held behind a reply its peer has not taken yet."""

    __slots__ = ("body", "who")

    def __init__(self, body: list[bytes], who: str | None) -> None:
        self.body, self.who = body, who


class _Gone(Exception):
    pass


MAX_READERS = 1000  # subscribers tracked; the one heard from longest ago goes first


class Readers:
    """Subscribers that say how far they are: `hello` with `subscriber`, `at` and `done`."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, bool, float]] = {}  # id -> (at, done, when heard)

    def heard(self, who: str, at: int, done: bool, now: float) -> None:
        self._seen.pop(who, None)
        self._seen[who] = (at, done, now)  # (insertion order: the oldest first)
        while len(self._seen) > MAX_READERS:
            del self._seen[next(iter(self._seen))]

    def behind(self, last: int, now: float, within: float) -> list[int]:
        """Where the subscribers still behind `last` are (heard from within `within` seconds, not done)."""
        return [at for at, done, when in self._seen.values() if not done and at < last and now - when <= within]
