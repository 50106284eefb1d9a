"""The dashboard's state: one card per engine, built from the run's events.

The bridge applies every event of the run to a Board, in gseq order (history
first, then live), so the board is a pure function of the events it has seen:
a page that reloads gets the same cards back. Cards are plain JSON-able dicts;
`changes()` hands out only the fields that changed since the last call, which
is what the feed streams (docs/WEB.md).

Screenshots stay here as bytes (the newest few per engine) and are served by
URL; the cards carry only their URL and metadata.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from bus.protocol import AnyEvent, Event, jsonable
from bus.view import JOB_ENDS

LOG_LINES = 12  # the newest log lines a card shows
FINDINGS = 20  # the newest findings a card lists (it counts all of them)
SHOTS_KEPT = 3  # screenshots kept per engine, so a page still loading the previous one gets it
RATE_WINDOW = 10.0  # seconds of progress samples behind a card's rate and ETA
TEXT_MAX = 2_000  # characters of one log line, error or detail kept for a card
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"}  # never SVG: it can carry script


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX] + f" [... {len(text) - TEXT_MAX} more characters]"


class Card:
    """One engine (instance) as the page shows it."""

    NEW: dict[str, Any] = {  # a card before any event; values are replaced, never changed in place
        "name": "", "state": "pending", "reason": "", "pid": None, "restarts": 0,
        "phase": "", "progress": None, "rate": None, "eta": None,
        "logs": [], "findings": [], "findings_total": 0, "screenshot": None, "shots_total": 0,
        "result": None, "error": None, "exit": None, "events": 0, "updated": None,
        "job": None, "jobs": {"done": 0, "failed": 0, "lost": 0},
    }
    FIELDS = tuple(NEW)
    # Every kind (tests/unit/test_kinds.py): what `apply` shows of it, or None for nothing
    # (screenshots: the Board keeps their bytes and calls `shot`).
    KINDS: dict[str, str | None] = {
        "state": "state, reason, pid, restarts", "hello": "pid", "phase.start": "phase", "phase.error": "error",
        "progress": "progress, rate, eta", "log": "logs", "finding": "findings", "result": "result", "error": "error",
        "exit": "exit", "screenshot": "screenshot (by Board.apply)",
        "phase.done": None, "heartbeat": None, "bye": None, "sup.start": None, "sup.stop": None, "welcome": None, "upstream": None,
        "job.started": "job", "job.done": "job, jobs", "job.failed": "job, jobs", "job.retried": "job, jobs", "job.dead": "job, jobs",
        "job.queued": None, "job.end": None,  # (a queued job has no engine yet; job.end is never published)
    }

    def __init__(self, name: str) -> None:
        self.data: dict[str, Any] = {**Card.NEW, "name": name}
        self.dirty: set[str] = set(Card.FIELDS)
        self._logs: deque[dict[str, Any]] = deque(maxlen=LOG_LINES)
        self._findings: deque[dict[str, Any]] = deque(maxlen=FINDINGS)
        self._samples: deque[tuple[float, float]] = deque()  # (ts, done or pct) of the current phase
        self._sampling: tuple[str, str] | None = None  # (phase, "done" or "pct") the samples are of

    def set(self, **fields: Any) -> None:
        for name, value in fields.items():
            if self.data[name] != value:
                self.data[name] = value
                self.dirty.add(name)

    def apply(self, event: Event) -> None:
        f = event.fields()
        kind = event.KIND
        self.set(events=self.data["events"] + 1, updated=event.ts)
        if kind == "state":
            self.set(state=f["state"], reason=_cut(f["reason"]), pid=f["pid"], restarts=f["restarts"])
            if f["state"] == "starting":
                self.set(exit=None)
        elif kind == "hello":
            self.set(pid=f["pid"])
        elif kind == "phase.start":
            self.set(phase=f["phase"], progress=None, rate=None, eta=None)
        elif kind == "phase.error":
            self.set(error={"message": _cut(f["message"]), "type": "", "fatal": False, "phase": f["phase"], "ts": event.ts})
        elif kind == "progress":
            self._progress(event.ts, f)
        elif kind == "log":
            self._logs.append({"ts": event.ts, "level": f["level"], "stream": f["stream"], "message": _cut(f["message"])})
            self.set(logs=list(self._logs))
        elif kind == "finding":
            self._findings.append({"ts": event.ts, "seq": event.seq, "data": jsonable(f["data"])})
            self.set(findings=list(self._findings), findings_total=self.data["findings_total"] + 1)
        elif kind == "result":
            self.set(result=jsonable(f["summary"]))
        elif kind == "error":
            self.set(error={"message": _cut(f["message"]), "type": f["type"], "fatal": f["fatal"], "phase": "", "ts": event.ts})
        elif kind == "exit":
            self.set(exit={"code": f["code"], "signal": f["signal"], "signame": f["signame"], "runtime": f["runtime"]})
        elif kind == "job.started":
            self.set(job={"id": event.job, "queue": f["queue"], "attempt": f["attempt"], "since": event.ts})
        elif kind in ("job.done", "job.failed", "job.retried", "job.dead"):
            if self.data["job"] is not None and self.data["job"]["id"] == event.job:
                self.set(job=None)
            counts = dict(self.data["jobs"])
            counts[JOB_ENDS[kind]] += 1
            self.set(jobs=counts)

    def _progress(self, ts: float, f: dict[str, Any]) -> None:
        progress = {"phase": f["phase"], "done": f["done"], "total": f["total"], "pct": f["pct"], "detail": _cut(f["detail"])}
        self.set(progress=progress, phase=f["phase"] or self.data["phase"])
        unit = "done" if f["done"] is not None else "pct" if f["pct"] is not None else None
        if unit is None:
            return
        value = float(f[unit])
        if self._sampling != (f["phase"], unit) or (self._samples and value < self._samples[-1][1]):
            self._samples.clear()  # a new phase, another unit, or a count that went back: start over
            self._sampling = (f["phase"], unit)
        self._samples.append((ts, value))
        while len(self._samples) > 2 and ts - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        rate = eta = None
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        if t1 > t0 and v1 >= v0:
            per_s = (v1 - v0) / (t1 - t0)
            rate = {"value": round(per_s, 3), "unit": "%" if unit == "pct" else "units"}
            left = (f["total"] - f["done"]) if unit == "done" and f["total"] is not None else (100.0 - f["pct"]) if f["pct"] is not None and unit == "pct" else None
            if left is not None and per_s > 0:
                eta = round(max(0.0, left) / per_s, 1)
            elif left == 0:
                eta = 0.0
        self.set(rate=rate, eta=eta)

    def shot(self, event: Event, url: str) -> None:
        f = event.fields()
        self.set(
            screenshot={"url": url, "name": f["name"], "mime": f["mime"], "size": f["size"], "ts": event.ts, "gseq": event.gseq},
            shots_total=self.data["shots_total"] + 1,
        )

    def take(self, everything: bool = False) -> dict[str, Any] | None:
        fields = Card.FIELDS if everything else [n for n in Card.FIELDS if n in self.dirty]
        if not everything:
            self.dirty.clear()
        if not fields:
            return None
        return {"name": self.data["name"], **{n: self.data[n] for n in fields}}


class Board:
    """Every card of one run, the supervisor's status, and the screenshots."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.run: str | None = None
        self.gseq = 0
        self.ended = False
        self.connected = False  # the bridge hears from a supervisor
        self.note = f"waiting for a supervisor at {address}"
        self.supervisor: dict[str, Any] = {}
        self.cards: dict[str, Card] = {}
        self.shots: dict[int, tuple[str, bytes]] = {}  # gseq -> (content type, bytes)
        self._shots_of: dict[str, deque[int]] = {}
        self._head_dirty = True  # run, gseq, ended, connected or note changed
        self._status_dirty = True

    # -- what the bridge feeds in ---------------------------------------------------

    def begin(self, run: str) -> None:
        """A run starts being followed: a different run clears the board."""
        if run != self.run:
            self.run, self.gseq, self.ended = run, 0, False
            self.supervisor, self.cards, self.shots, self._shots_of = {}, {}, {}, {}
        self.note = ""
        self._head_dirty = self._status_dirty = True

    def apply(self, event: AnyEvent) -> None:
        if event.gseq is not None and event.gseq > self.gseq:
            self.gseq = event.gseq
            self._head_dirty = True
        if not isinstance(event, Event):  # an UnknownEvent (a newer kind): nothing to show
            return
        kind = event.KIND
        if kind == "sup.start":
            for name in event.fields()["engines"]:
                self._card(name)
        elif kind == "sup.stop":
            f = event.fields()
            self.ended, self._head_dirty = True, True
            self.note = f"run ended: {f['reason']} (exit code {f['code']})"
        elif event.engine and kind != "heartbeat":  # a heartbeat changes nothing a card shows
            card = self._card(f"{event.origin}/{event.engine}" if event.origin else event.engine)  # (a hub's: one card per origin)
            if kind == "screenshot":
                self._keep_shot(card, event)
            card.apply(event)

    def set_status(self, reply: dict[str, Any]) -> None:
        keep = ("run", "pid", "version", "uptime", "stopping", "counters", "history", "queues")  # (queues: work queues, when it has any)
        status = {k: reply.get(k) for k in keep}
        security = reply.get("security") or {}
        status["insecure"] = bool(security.get("insecure"))
        status["engines"] = {e["name"]: {k: e.get(k) for k in ("state", "pid", "uptime", "restarts", "dropped", "lost")} for e in reply.get("engines", [])}
        status["at"] = time.time()
        if status != self.supervisor:
            self.supervisor = status
            self._status_dirty = True

    def set_connection(self, connected: bool, note: str) -> None:
        if (connected, note) != (self.connected, self.note):
            self.connected, self.note = connected, note
            self._head_dirty = True

    # -- what the feed hands out ----------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything, as of gseq `gseq`."""
        cards = [card.take(everything=True) for card in self.cards.values()]
        return {**self._head(), "supervisor": self.supervisor, "engines": cards}

    def changes(self) -> dict[str, Any] | None:
        """What changed since the last call (the cards' changed fields only), or None."""
        cards = [c for c in (card.take() for card in self.cards.values()) if c is not None]
        if not cards and not self._head_dirty and not self._status_dirty:
            return None
        update: dict[str, Any] = {**self._head(), "engines": cards}
        if self._status_dirty:
            update["supervisor"] = self.supervisor
        self._head_dirty = self._status_dirty = False
        return update

    def shot(self, gseq: int) -> tuple[str, bytes] | None:
        return self.shots.get(gseq)

    # -- inside ---------------------------------------------------------------------

    def _head(self) -> dict[str, Any]:
        return {"address": self.address, "run": self.run, "gseq": self.gseq, "ended": self.ended, "connected": self.connected, "note": self.note}

    def _card(self, name: str) -> Card:
        card = self.cards.get(name)
        if card is None:
            card = self.cards[name] = Card(name)
        return card

    def _keep_shot(self, card: Card, event: Event) -> None:
        f = event.fields()
        gseq = event.gseq or 0
        mime = f["mime"] if f["mime"] in IMAGE_TYPES else "application/octet-stream"
        self.shots[gseq] = (mime, bytes(f["data"]))
        kept = self._shots_of.setdefault(card.data["name"], deque())
        kept.append(gseq)
        while len(kept) > SHOTS_KEPT:
            self.shots.pop(kept.popleft(), None)
        card.shot(event, f"shots/{self.run}/{gseq}")
