"""What status and snapshots show of one engine, from the events published for it (pure).

How it works: an `EngineView` takes every published event of its engine
(`take`), in order, and keeps what a late joiner wants to see first: its state,
its phase and progress, its newest logs, screenshot, result and error. The
supervisor keeps one per engine it runs (beside the facts only it knows: see
supervisor/control.py `engine_status`), a hub one per engine it relays, so both
answer `status` and `snapshot` with the same fields (docs/PROTOCOL.md, "status").

`TAKES` names, for every event kind, what the view does with it (None: nothing
on purpose); tests/unit/test_kinds.py fails on a kind it does not name.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from bus.protocol import Event

LAST_LOGS = 20  # log lines a snapshot shows per engine


@dataclass
class EngineView:
    name: str
    origin: str | None = None     # a hub's label of the upstream it runs under
    state: str = ""
    reason: str = ""
    pid: int | None = None
    restarts: int = 0
    remote: bool = False
    host: str | None = None
    exit: dict[str, Any] | None = None
    events: int = 0               # events from the engine itself (they carry its seq)
    phase: str = ""
    progress: dict[str, Any] | None = None
    last_event_ts: float = 0.0
    logs: deque[list[Any]] = field(default_factory=lambda: deque(maxlen=LAST_LOGS))  # [ts, level, stream, message]
    screenshot: dict[str, Any] | None = None   # the newest one: gseq, name, mime, size, ts
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None        # the newest one: message, type, fatal, ts
    findings: int = 0
    job: dict[str, Any] | None = None          # the job it runs (work queues): id, queue, attempt, since
    jobs: dict[str, int] = field(default_factory=lambda: {"done": 0, "failed": 0, "lost": 0})  # how its jobs ended (failed: also dead)

    def take(self, event: Event, gseq: int) -> None:
        """One published event of this engine (`gseq`: its number)."""
        self.last_event_ts = event.ts
        if event.seq is not None:
            self.events += 1
        taker = TAKES.get(event.KIND)  # (a kind newer than us: nothing to keep)
        if taker is not None:
            taker(self, event, gseq)

    def status(self, **facts: Any) -> dict[str, Any]:
        """The engine's entry in `status` (`facts`: what the caller knows better, or besides)."""
        out = {
            "name": self.name, "engine": self.name.split(".", 1)[0], "instance": None, "instances": None,
            "state": self.state, "reason": self.reason, "pid": self.pid, "started": None, "uptime": None,
            "restarts": self.restarts, "spawns": None, "exit": self.exit, "error": None, "events": self.events,
            "lost": 0, "dropped": 0, "dropped_kinds": {}, "recovered": 0, "lines": 0, "markers": 0, "bad_markers": 0,
            "phase": self.phase, "progress": self.progress, "last_event": self.last_event_ts or None,
            "remote": self.remote, "host": self.host, "via": None, "job": self.job, "jobs": dict(self.jobs),
            **({"origin": self.origin} if self.origin is not None else {}),
        }
        out.update(facts)
        return out

    def seen(self) -> dict[str, Any]:
        """What a snapshot adds to an engine's status."""
        return {"logs": list(self.logs), "screenshot": self.screenshot, "result": self.result, "error": self.error, "findings": self.findings}


def _state(view: EngineView, f: Any, gseq: int) -> None:
    view.state, view.reason, view.pid, view.restarts = f.state, f.reason, f.pid, f.restarts
    view.remote = view.remote or f.remote or (not f.cause and f.reason.startswith("remote:"))  # (a supervisor before 0.2 said it in words)


def _exit(view: EngineView, f: Any, gseq: int) -> None:
    view.exit = {"code": f.code, "signal": f.signal, "signame": f.signame}


def _hello(view: EngineView, f: Any, gseq: int) -> None:
    view.host = f.host or view.host


def _phase(view: EngineView, f: Any, gseq: int) -> None:
    view.phase = f.phase


def _progress(view: EngineView, f: Any, gseq: int) -> None:
    view.progress = {"phase": f.phase, "done": f.done, "total": f.total, "pct": f.pct, "detail": f.detail}


def _log(view: EngineView, f: Any, gseq: int) -> None:
    view.logs.append([f.ts, f.level, f.stream, f.message])


def _screenshot(view: EngineView, f: Any, gseq: int) -> None:
    view.screenshot = {"gseq": gseq, "name": f.name, "mime": f.mime, "size": f.size, "ts": f.ts}


def _result(view: EngineView, f: Any, gseq: int) -> None:
    view.result = f.summary


def _error(view: EngineView, f: Any, gseq: int) -> None:
    view.error = {"message": f.message, "type": f.type, "fatal": f.fatal, "ts": f.ts}


def _finding(view: EngineView, f: Any, gseq: int) -> None:
    view.findings += 1


def _job_started(view: EngineView, f: Any, gseq: int) -> None:
    view.job = {"id": f.job, "queue": f.queue, "attempt": f.attempt, "since": f.ts}


def _job_ended(view: EngineView, f: Any, gseq: int) -> None:
    if view.job is not None and view.job["id"] == f.job:
        view.job = None
    view.jobs[JOB_ENDS[f.KIND]] += 1


JOB_ENDS = {"job.done": "done", "job.failed": "failed", "job.dead": "failed", "job.retried": "lost"}  # (its instance ended: lost to it)


TAKES: dict[str, Callable[[EngineView, Any, int], None] | None] = {
    "state": _state, "exit": _exit, "hello": _hello,
    "phase.start": _phase, "phase.done": _phase, "phase.error": _phase,
    "progress": _progress, "log": _log, "screenshot": _screenshot, "result": _result, "error": _error, "finding": _finding,
    "heartbeat": None, "bye": None,                                 # liveness and counts: the fleet's
    "sup.start": None, "sup.stop": None, "welcome": None, "upstream": None,  # not an engine's
    "job.started": _job_started, "job.done": _job_ended, "job.failed": _job_ended, "job.retried": _job_ended, "job.dead": _job_ended,
    "job.queued": None, "job.end": None,  # (queued: no engine yet; end: never published, job.done/failed/dead say it)
}


def add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted({*a, *b})}


def most_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Per kind, the larger count (counts only grow: the newest report wins, an older one cannot lower it)."""
    return {k: max(a.get(k, 0), b.get(k, 0)) for k in sorted({*a, *b})}
