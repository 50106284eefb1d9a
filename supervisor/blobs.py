"""The publisher's byte budget for screenshots: what libzmq still holds for subscribers.

A screenshot goes into every subscriber's queue by reference (zero-copy), and
libzmq lets go of it once the last queue has written it to its socket or
dropped it. A subscriber that stops reading keeps up to 10,000 messages queued
(sockets.PUB_HWM), and their images with them, long after the history ring has
let them go: 2,000 screenshots of 1 MB with one stalled subscriber peaked at
1,033 MiB, 360 MiB without it. So images are sent tracked (pyzmq's
MessageTracker: done once libzmq has let go), and while those not let go pass
BUDGET, a screenshot is not published: every subscriber sees its gseq missing
and fetches it from history, as after any drop (docs/PROTOCOL.md, section 7).
Nothing is lost; the subscribers that do read pay a history request per
screenshot until the stalled one reads again or leaves (libzmq drops new
messages for a full queue, never the queued ones; over TCP a peer that stops
answering heartbeats is dropped after 10 s, a stopped local `bus tail` holds
on until it is resumed or killed).

Each image counts at least MIN_COST, its tracker's own cost included, so tiny
or empty images cannot pile up trackers (at most BUDGET / MIN_COST = 2,048).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Sequence

import zmq

BUDGET = 64 * 1024 * 1024  # image bytes libzmq may hold for subscribers (one image alone always goes)
MIN_COST = 32 * 1024  # what an image counts at least (a tracker and its Event are about 1.7 KB of Python)
RESCAN = 0.05  # seconds between full scans while over the budget (the oldest is held, later ones may be done)


class BlobBudget:
    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self.held = 0       # what the images sent and not let go of yet count (as far as we know)
        self.withheld = 0   # screenshots not published for the budget (fetched from history)
        self._out: deque[tuple[zmq.MessageTracker, int]] = deque()
        self._scanned = 0.0

    def fits(self, frames: Sequence[Any]) -> bool:
        """Whether an event with these image frames may be published now (else count it withheld)."""
        self._let_go()
        if not self._out:
            return True
        size = _cost(frames)
        if self.held + size <= self.budget or self._rescan(size):
            return True
        self.withheld += 1
        return False

    def send(self, pub: zmq.Socket, frames: Sequence[Any]) -> None:
        """Send an event's image frames, tracked (its topic and header are sent, with SNDMORE)."""
        last = len(frames) - 1
        trackers = []
        for k, frame in enumerate(frames):
            data = frame.buffer if isinstance(frame, zmq.Frame) else frame
            trackers.append(pub.send(zmq.Frame(data, copy=False, track=True), 0 if k == last else zmq.SNDMORE, copy=False, track=True))
        if not all(t.done for t in trackers):
            self._out.append((zmq.MessageTracker(*trackers), _cost(frames)))
            self.held += self._out[-1][1]

    def _let_go(self) -> None:
        """Forget the oldest images libzmq has let go of (in order: cheap, every call)."""
        out = self._out
        while out and out[0][0].done:
            self.held -= out.popleft()[1]

    def _rescan(self, size: int) -> bool:
        """Over the budget with the oldest still held: later images may be let go of already."""
        now = time.monotonic()
        if now - self._scanned >= RESCAN:
            self._scanned = now
            self._out = deque(entry for entry in self._out if not entry[0].done)
            self.held = sum(n for _, n in self._out)
        return not self._out or self.held + size <= self.budget


def _cost(frames: Sequence[Any]) -> int:
    return max(MIN_COST, sum(len(f) for f in frames))
