"""Batching without delay: what an engine sends during a burst goes out as batches.

How it works: the SDK sends an event at once when the engine has been quiet
(nothing sent for BATCH_GAP seconds, nothing waiting here), exactly as a
single-event message. An event that follows the last one sooner than that, or
while a batch is waiting, is put here instead, and the flusher thread sends
everything waiting in as few messages as it can: consecutive header-only events
as one batch frame (a msgpack array of their header maps, docs/PROTOCOL.md
section 3), an event with blobs (a screenshot) alone, all in their order.
There is no timer: the flusher sends as soon as it runs, and while it sends,
the events that come meanwhile form the next batch. So an idle engine's event
goes out as fast as before, and a busy one pays one zmq send per batch instead
of one per event.

Only the flusher touches the socket while anything waits here or is in its
hands; the SDK sends directly only when neither is the case (`put` says so),
under its own lock, so the two never use the socket at once and the order of the
events is the order of their sequence numbers.

Bounds: at most `limit` events wait here (BUS_SNDHWM); past it, droppable
events are dropped and the others wait for room up to the send timeout, as
they do for zmq's own queue. Closing sends what waits within the linger.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol

import zmq

from bus.protocol.limits import MAX_BATCH, MAX_BATCH_BYTES

BATCH_GAP = 50e-6         # seconds: an event sooner than this after the last send joins a batch
ZERO_COPY_ABOVE = 64 * 1024  # zmq zero-copy only pays for large frames
POLL_SLICE = 0.05         # seconds the flusher waits for room at a time (it checks its deadline between)


def send_now(sock: zmq.Socket, frames: list[Any]) -> None:
    """One message, without waiting (zmq.Again when the queue is full); large frames zero-copy."""
    if len(frames) == 1:
        sock.send(frames[0], zmq.NOBLOCK)  # one frame: skip send_multipart's loop
    else:
        sock.send_multipart(frames, zmq.NOBLOCK, copy=not any(len(f) > ZERO_COPY_ABOVE for f in frames))


def batch_frame(headers: list[bytes]) -> bytes:
    """Header frames (msgpack maps) as one batch frame: a msgpack array of those maps."""
    n = len(headers)
    head = bytes((0x90 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return head + b"".join(headers)


class Sender(Protocol):
    """What the batcher asks of the engine when its queue is full."""

    _stalled: bool          # a send timed out: drop without waiting until one gets through
    _send_timeout_ms: int

    def _stall(self, kind: str, what: str) -> None: ...


class Batcher:
    def __init__(self, sock: zmq.Socket, limit: int, on_sent: Callable[[], None]) -> None:
        self._sock = sock
        self._limit = max(1, limit)
        self._on_sent = on_sent
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._queue: list[list[Any]] = []
        self._in_hand = 0
        self._deadline: float | None = None  # closing: send what waits until then
        self._thread: threading.Thread | None = None
        self.lost = 0  # events still here when the linger ran out

    def put(self, frames: list[Any], droppable: bool, engine: Sender, kind: str, *, unless_idle: bool = False) -> bool | None:
        """Queue one event for the flusher; False when it cannot be: full, and it may be dropped
        or the engine is stalled, or no room came within the engine's send timeout (it stalls).
        `unless_idle`: None, queueing nothing, when nothing waits here and nothing is being
        sent (the caller sends it at once, itself: the socket is free)."""
        with self._lock:
            if unless_idle and not self._queue and not self._in_hand:
                return None
            if len(self._queue) + self._in_hand >= self._limit:
                if droppable or engine._stalled:
                    return False
                deadline = time.monotonic() + engine._send_timeout_ms / 1000
                while len(self._queue) + self._in_hand >= self._limit:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        engine._stall(kind, "took nothing")
                        return False
                    self._room.wait(left)
            self._queue.append(frames)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="bus-flusher", daemon=True)
                self._thread.start()
            elif len(self._queue) == 1:
                self._wake.notify()
            return True

    def sent(self, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) until everything put here has been handed to zmq:
        a job's end goes out before the engine asks for its next job on another socket."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._in_hand:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._room.wait(left)
        return True

    def close(self, linger: float) -> None:
        """Send what waits (at most `linger` seconds), then stop the flusher."""
        with self._lock:
            self._deadline = time.monotonic() + linger
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(linger + 1.0)

    # -- the flusher ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and self._deadline is None:
                    self._wake.wait()
                if not self._queue:
                    return
                items = self._queue
                self._in_hand = len(items)
                self._queue = []
            unsent = 0
            for message, count in _messages(items):
                if unsent or not self._send(message):
                    unsent += count  # the linger ran out: this and what follows are not sent
            with self._lock:
                self._in_hand = 0
                self._room.notify_all()
                if unsent:
                    self.lost += unsent + len(self._queue)
                    self._queue.clear()
                    return

    def _send(self, frames: list[Any]) -> bool:
        """One message, waiting for room as long as it takes (until the closing deadline)."""
        while True:
            try:
                send_now(self._sock, frames)
                self._on_sent()
                return True
            except zmq.Again:
                pass
            wait = POLL_SLICE
            if self._deadline is not None:
                wait = min(wait, self._deadline - time.monotonic())
                if wait <= 0:
                    return False
            self._sock.poll(int(wait * 1000) + 1, zmq.POLLOUT)


def _messages(items: list[list[Any]]) -> list[tuple[list[Any], int]]:
    """The zmq messages for these events, in order, with how many events each holds:
    runs of header-only events as batch frames, an event with blobs alone."""
    messages: list[tuple[list[Any], int]] = []
    run: list[bytes] = []
    size = 0

    def end_run() -> None:
        messages.append(([batch_frame(run) if len(run) > 1 else run[0]], len(run)))

    for frames in items:
        if len(frames) == 1:
            header = frames[0]
            if run and (len(run) >= MAX_BATCH or size + len(header) > MAX_BATCH_BYTES):
                end_run()
                run, size = [], 0
            run.append(header)
            size += len(header)
            continue
        if run:
            end_run()
            run, size = [], 0
        messages.append((frames, 1))
    if run:
        end_run()
    return messages
