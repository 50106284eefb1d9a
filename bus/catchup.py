"""The subscriber's catch-up (the ZeroMQ guide's Clone pattern), without I/O.

How it works: a driver (bus.subscriber: sync or asyncio) feeds `Catchup` what
arrives on its SUB socket (`feed`) and, whenever `need` is set, asks the
supervisor's history for that range and feeds the reply back (`give`). Events
come out of `ready` in global sequence order, each once:

- Nothing is released before the first `welcome` (proof the subscription is
  live; its `last` is the newest gseq then). Events that arrive earlier wait.
- The welcome asks history for what came before: everything (`history="all"`),
  the newest N, or since a time; `None` asks for nothing.
- A live event whose gseq jumps past the next expected one asks history for
  the gap first; it and everything after it wait meanwhile.
- What history no longer holds is recorded in `lost`, never skipped silently.
- A welcome with another run id is a new supervisor run: numbering restarts.
  If the run we followed had not ended for us, its rest is fetched first
  (history of that run: memory or the journal); if that holds its `sup.stop`,
  the run ends there, else the old run is recorded in `cut` and we go on with
  the new run.
- `sup.stop` ends the run (`ended`).
- The publisher drops the newest messages for a subscriber whose queue is
  full, so a stalled subscriber's missing tail shows no gap until something
  else arrives, and nothing may (the run ended). The driver therefore asks the
  supervisor's `hello` after a quiet spell and hands it to `probe`, which asks
  for whatever was published beyond what we have.

Kept free of sockets so it is tested alone and shared by both drivers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .protocol import AnyEvent, RemoteProtocolError, Welcome, decode_published

ALL = "all"


@dataclass(frozen=True, slots=True)
class Need:
    """A history request: events with after < gseq <= until (the newest `last`, or since `since`)."""

    after: int
    until: int | None  # None: to the end of the run
    last: int | None = None
    since: float | None = None


class Catchup:
    def __init__(
        self,
        *,
        history: int | str | None = ALL,
        since: float | None = None,
        kinds: Iterable[str] | None = None,
        engines: Iterable[str] | None = None,
    ) -> None:
        self.history = history
        self.since = since
        self.kinds = frozenset(kinds) if kinds else None
        self.engines = frozenset(engines) if engines else None
        self.run: str | None = None            # id of the supervisor run we follow
        self.lost: list[tuple[int, int | None]] = []  # gseq ranges history could not give back (None: to the run's end)
        self.rejected = 0                      # messages we could not decode
        self.refills = 0                       # gaps filled from history
        self.cut: list[tuple[str, int]] = []   # runs that ended without their end for us: (run, last gseq we had)
        self.ended = False                     # the run's sup.stop was released
        self.need: Need | None = None          # the history the driver must fetch now
        self.ready: deque[AnyEvent] = deque()  # events to hand out, in order
        self._next: int | None = None          # gseq expected next (None: not welcomed yet)
        self._waiting: deque[AnyEvent] = deque()  # live events held until history is in
        self._goal: int | None = 0             # `until` of the fill in progress
        self._first_page = False
        self._successor: Welcome | None = None  # a new run's welcome, held while the old run's rest comes

    @property
    def position(self) -> int:
        """The gseq of the newest event of the run released (or passed over by the filters); 0 before any."""
        return 0 if self._next is None else self._next - 1

    @property
    def live(self) -> bool:
        """Welcomed, and no history request outstanding."""
        return self._next is not None and self.need is None

    @property
    def history_kinds(self) -> list[str] | None:
        """Kinds to ask history for (sup.stop always: it tells where a run ends)."""
        return sorted(self.kinds | {"sup.stop"}) if self.kinds is not None else None

    def feed(self, frames: Sequence[Any]) -> None:
        """One message from the SUB socket: [topic, header, *blobs]."""
        try:
            event = decode_published(frames)
        except RemoteProtocolError:
            self.rejected += 1
            return
        if isinstance(event, Welcome):
            if event.run != self.run and event.run != getattr(self._successor, "run", None):
                self._welcome(event)
            return
        self._waiting.append(event)
        self._advance()

    def give(self, events: list[AnyEvent], reply: dict[str, Any]) -> None:
        """One page of the history asked for in `need`."""
        need = self.need
        assert need is not None, "history given without being asked for"
        first = reply.get("first", 0)
        if self._first_page and need.last is None and need.since is None and first > need.after + 1:
            self.lost.append((need.after + 1, first - 1 if need.until is None else min(need.until, first - 1)))
        self._first_page = False
        self._release(events)
        if reply.get("more"):
            self.need = Need(reply["next"], need.until, None, need.since)
            return
        self.need = None
        if self._next is not None and not self.ended and self._goal is not None:
            self._next = max(self._next, self._goal + 1)  # filtered-out events leave no trace
        successor, self._successor = self._successor, None
        if successor is not None and not self.ended:
            assert self.run is not None
            self.cut.append((self.run, self.position))  # said, never silent: the old run ended without its end for us
            self._welcome(successor, rest_fetched=True)  # the old run's rest is in and it did not end: go on
            return
        self._advance()

    def probe(self, hello: dict[str, Any]) -> None:
        """A `hello` reply (or its equivalent from the journal: `run` and `last`)
        asked after a quiet spell: fetch what was published beyond what we have."""
        if self.need is not None or self._next is None or self.ended or self.run is None:
            return
        if hello.get("run") != self.run:
            self._ask(Need(self._next - 1, None))  # our run is over: its rest, from the journal
        elif hello.get("last", 0) >= self._next:
            self.refills += 1
            self._ask(Need(self._next - 1, hello["last"]))

    def unavailable(self) -> None:
        """The history asked for in `need` cannot be had (an earlier run's rest from a
        supervisor without its journal): recorded as lost, then on to what follows."""
        need = self.need
        assert need is not None
        self.lost.append((need.after + 1, need.until))
        self._goal = None
        self.give([], {"first": 0, "more": False})

    # -- inside -----------------------------------------------------------------------

    def _welcome(self, welcome: Welcome, rest_fetched: bool = False) -> None:
        if self.run is not None and self._next is not None and not self.ended and not rest_fetched:
            # The run we followed did not end for us (its end was dropped, or its
            # supervisor died): fetch its rest before going on with the new run.
            self._successor = welcome
            self._waiting.clear()  # older events come with the rest, newer ones with the new run's history
            self._ask(Need(self._next - 1, None))
            if self.need is not None:
                return
            self._successor = None
        self.run, self.ended = welcome.run, False
        replay = self.history == ALL or self.since is not None or (isinstance(self.history, int) and self.history > 0)
        self._next = 1 if replay else welcome.last + 1  # history comes in from the start; live from last on
        self._waiting = deque(e for e in self._waiting if e.gseq is not None and e.gseq > welcome.last)
        if self.history == ALL:
            self._ask(Need(0, welcome.last))
        elif self.since is not None:
            self._ask(Need(0, welcome.last, since=self.since))
        elif isinstance(self.history, int) and self.history > 0:
            self._ask(Need(0, welcome.last, last=self.history))
        self._advance()

    def _ask(self, need: Need) -> None:
        if need.until is None or need.until > need.after:
            self.need, self._goal, self._first_page = need, need.until, True

    def _advance(self) -> None:
        while self.need is None and self._next is not None and self._waiting and not self.ended:
            event = self._waiting[0]
            gseq = event.gseq
            if gseq is None or gseq < self._next:
                self._waiting.popleft()  # a duplicate (or from an older run)
            elif gseq > self._next:
                self.refills += 1
                self._ask(Need(self._next - 1, gseq - 1))
            else:
                self._waiting.popleft()
                self._release([event])

    def _release(self, events: list[AnyEvent]) -> None:
        for event in events:
            if self.ended:
                return
            if event.gseq is not None:
                if self._next is not None and event.gseq < self._next:
                    continue
                self._next = event.gseq + 1
            if self._wanted(event):
                self.ready.append(event)
            if event.kind == "sup.stop":
                self.ended = True

    def _wanted(self, event: AnyEvent) -> bool:
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.engines is not None and event.engine:  # supervisor-wide events (sup.*) pass
            name = event.engine
            return name in self.engines or name.split(".", 1)[0] in self.engines
        return True
