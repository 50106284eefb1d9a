"""Showing events: JSON lines, plain prefixed lines, or a live view with bars.

All renderers take events one at a time (`handle`) and are closed once
(`close`). The launcher hands them events straight from the supervisor's
loop; `bus tail` from a Subscriber. Text is never parsed as rich markup, so
a log line holding "[red]" prints as written; and control characters an
engine prints (escape sequences that would clear the viewer's screen or
retitle their terminal) are shown as visible `\\xNN` escapes instead.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from bus.protocol import AnyEvent, Event, UnknownEvent, jsonable

PALETTE = ["cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta"]
PLAIN_PROGRESS_EVERY = 1.0  # plain output: at most one progress line per engine per second
# C0 controls but tab, DEL, and C1 controls (0x9b is a one-byte CSI on some terminals).
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0)]}


def printable(text: str) -> str:
    """`text` safe to write to a terminal: control characters made visible."""
    return text.translate(_CONTROLS)


def who(event: AnyEvent) -> str:
    """Whose event: the engine, prefixed by its origin when a hub relayed it (`east/audit`)."""
    if event.origin:
        return f"{event.origin}/{event.engine}" if event.engine else event.origin
    return event.engine


def named(engine: dict[str, Any]) -> str:
    """The same for an engine map from status or snapshot."""
    return f"{engine['origin']}/{engine['name']}" if engine.get("origin") else engine["name"]


def describe(event: AnyEvent) -> str | None:
    """One line of text for an event, or None if it is not shown as a line."""
    if isinstance(event, UnknownEvent):
        return f"({event.kind} event, not known to this version)"
    describe_kind = _DESCRIBE[event.KIND]  # every kind is named there (tests/unit/test_kinds.py)
    if describe_kind is None:
        return None
    fields = event.fields()
    if event.job:
        fields["job"] = event.job
    return describe_kind(fields)


def _pairs(data: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in data.items())


def _exit(f: dict[str, Any]) -> str:
    how = f"exited with code {f['code']}" if f["signal"] is None else f"killed by {f['signame']}"
    return f"{how} after {f['runtime']:.1f}s"


# Every state (tests/unit/test_kinds.py); None: not shown as a line (the exit event says it, or nothing happened).
_STATES: dict[str, Callable[[dict[str, Any]], str | None] | None] = {
    "pending": None,
    "exited": None,
    "starting": lambda f: f"started ({f['reason']})",
    "unresponsive": lambda f: f"UNRESPONSIVE: {f['reason']}",
    "stopping": lambda f: f"stopping: {f['reason']}",
    "backoff": lambda f: f["reason"] if not f["delay"] else f"{_ended(f)}; restart {f['restarts']} in {f['delay']:.2f}s",
    "fatal": lambda f: f"FATAL: {f['reason']}",
    "lost": lambda f: f"LOST: {f['reason']}",
    "running": lambda f: f"attached ({f['reason'].removeprefix('remote: attached from ')})" if _cause(f) == "attached" else None,
}


def _cause(f: dict[str, Any]) -> str:
    """A state event's cause; for one from a supervisor before 0.2 (a run in an old journal), read from its words."""
    if f["cause"] or not f["reason"]:
        return str(f["cause"])
    reason = f["reason"]
    return "attached" if reason.startswith("remote: attached") else "stopped" if reason.endswith(": stopped") else ""


def _ended(f: dict[str, Any]) -> str:
    """How its process ended; for a state event from a supervisor before 0.2, the start of its reason."""
    return str(f["ended"]) if f["ended"] else str(f["reason"]).split(":")[0]


def _state(f: dict[str, Any]) -> str | None:
    describe_state = _STATES.get(f["state"])  # (a state newer than us: not shown)
    return describe_state(f) if describe_state else None


def _log(f: dict[str, Any]) -> str:
    return f["message"] if f["level"] == "info" else f"{f['level'].upper()}: {f['message']}"


# Every kind (tests/unit/test_kinds.py); None: not shown as a line (progress has its bars and its own lines).
_DESCRIBE: dict[str, Callable[[dict[str, Any]], str | None] | None] = {
    "heartbeat": None, "hello": None, "bye": None, "progress": None, "welcome": None,
    "state": _state,
    "log": _log,
    "phase.start": lambda f: f"phase {f['phase']} started" + (f": {f['detail']}" if f["detail"] else ""),
    "phase.done": lambda f: f"phase {f['phase']} done" + (f" in {f['elapsed']:.2f}s" if f["elapsed"] is not None else ""),
    "phase.error": lambda f: f"phase {f['phase']} FAILED: {f['message']}",
    "screenshot": lambda f: f"screenshot {f['name']} ({f['size']:,} bytes, {f['mime']})",
    "finding": lambda f: "finding: " + _pairs(f["data"]),
    "result": lambda f: "result: " + _pairs(f["summary"]),
    "error": lambda f: f"ERROR {f['type'] + ': ' if f['type'] else ''}{f['message']}",
    "exit": _exit,
    "sup.start": lambda f: f"supervisor started (run {f['run']}, engines: {', '.join(f['engines']) or 'none yet'})",
    "sup.stop": lambda f: f"supervisor stopped: {f['reason']} (exit code {f['code']})",
    "upstream": lambda f: {
        "started": f"supervisor at {f['address']} started (run {f['run']}, engines: {', '.join(f['engines'])})",
        "stopped": f"supervisor at {f['address']} stopped: {f['reason']} (exit code {f['code']})",
        "following": f"following the supervisor at {f['address']}" + (f" ({f['reason']})" if f["reason"] else ""),
        "lost": f"LOST the supervisor at {f['address']}: {f['reason']}",
    }.get(f["state"], f"{f['state']}: {f['reason']}"),
    # Work queues: what a job came to (a queued or started job is not a line of its own: there may be 100,000).
    "job.end": None, "job.queued": None, "job.started": None,
    "job.done": lambda f: f"job {f['job']} done in {f['runtime']:.2f}s" + (": " + _pairs(f["result"]) if f["result"] else ""),
    "job.failed": lambda f: f"job {f['job']} FAILED (attempt {f['attempt']}): {f['error']}; queued again",
    "job.retried": lambda f: f"job {f['job']} queued again (attempt {f['attempt']} lost): {f['reason']}",
    "job.dead": lambda f: f"job {f['job']} DEAD after attempt {f['attempt']}: {f['error']} (bus retry {f['job']})",
}


def progress_text(event: Event) -> str:
    f = event.fields()
    parts = [f["phase"] or "progress"]
    if f["pct"] is not None:
        parts.append(f"{f['pct']:.0f}%")
    if f["done"] is not None:
        parts.append(f"({f['done']}/{f['total']})" if f["total"] is not None else f"({f['done']})")
    if f["detail"]:
        parts.append(f["detail"])
    return " ".join(parts)


def to_json(event: AnyEvent) -> dict[str, Any]:
    """The `bus tail --json` form: screenshot bytes become their size and sha256."""
    out: dict[str, Any] = {"gseq": event.gseq, "kind": event.kind, "engine": event.engine, "seq": event.seq, "ts": event.ts}
    if event.origin:  # relayed by a hub
        out.update(origin=event.origin, origin_gseq=getattr(event, "origin_gseq", None))
    if isinstance(event, UnknownEvent):
        out.update({k: v for k, v in event.header.items() if k not in out and k != "v"})
        out["blobs"] = [{"size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for b in event.blobs]
        return jsonable(out)
    for name, value in event.fields().items():
        if name in event.BLOB_FIELDS:
            out["sha256"] = hashlib.sha256(value).hexdigest()
        else:
            out[name] = value
    return jsonable(out)


class _Buffered:
    """Text lines kept until `flush`: whoever feeds a renderer calls it when nothing more is
    ready (the launcher after each pass of the supervisor's loop, `bus tail` when its
    subscriber holds no more), so a flood costs one write per batch of lines, never a line less."""

    FLUSH_AT = 1000  # lines buffered at most

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._buffer: list[str] = []

    def _write(self, text: str) -> None:
        self._buffer.append(text)
        if len(self._buffer) >= self.FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.out.write("".join(self._buffer))
            self._buffer.clear()
        self.out.flush()

    def close(self) -> None:
        self.flush()


class JsonRenderer(_Buffered):
    """One JSON object per line."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        super().__init__(out)  # (stdout by default, as the other renderers)

    def handle(self, event: AnyEvent) -> None:
        self._write(json.dumps(to_json(event), ensure_ascii=False) + "\n")


class _Names:
    """A stable colour and a padded column per engine name."""

    def __init__(self) -> None:
        self.colours: dict[str, str] = {}
        self.width = 6

    def label(self, engine: str) -> tuple[str, str]:
        name = engine or "bus"
        if name not in self.colours:
            self.colours[name] = "bold white" if not engine else PALETTE[len(self.colours) % len(PALETTE)]
            self.width = max(self.width, min(len(name), 24))
        return name.ljust(self.width), self.colours[name]


class LineRenderer(_Buffered):
    """honcho-style `HH:MM:SS name | text` lines; colour only when asked (a TTY).
    Without colour (a pipe, a file) they are plain text, buffered (`_Buffered`)."""

    def __init__(self, out: TextIO = sys.stdout, *, color: bool = False, saver: ShotSaver | None = None) -> None:
        super().__init__(out)
        self.console = Console(file=out, force_terminal=color, no_color=not color, highlight=False, soft_wrap=True)
        self.color = color
        self.names = _Names()
        self.saver = saver
        self._last_progress: dict[str, tuple[float, str]] = {}
        self._second, self._stamp = -1, ""

    def handle(self, event: AnyEvent) -> None:
        if isinstance(event, Event) and event.KIND == "progress":
            text = self._throttled_progress(event)
        else:
            text = describe(event)
            if self.saver and (path := self.saver.handle(event)):
                text = f"{text} -> {path}"
        if text is None:
            return
        if self.color:
            self.console.print(line(self.names, event, text))
            return
        label, _ = self.names.label(who(event))
        second = int(event.ts or time.time())
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%H:%M:%S", time.localtime(second))
        self._write(f"{self._stamp} {label} | {printable(text)}\n")

    def summary(self, engine: dict[str, Any]) -> None:
        """One line of an engine's state from a snapshot (a late joiner's starting point)."""
        progress = engine.get("progress") or {}
        parts = [engine["state"]]
        if engine.get("pid") and engine["state"] in ("starting", "running", "unresponsive", "stopping"):
            parts.append(f"pid {engine['pid']}")
        if engine.get("phase"):
            parts.append(f"phase {engine['phase']}" + (f" {progress['pct']:.0f}%" if progress.get("pct") is not None else ""))
        if engine.get("screenshot"):
            parts.append(f"last screenshot {engine['screenshot']['name']}")
        label, colour = self.names.label(named(engine))
        stamp = time.strftime("%H:%M:%S")
        self.flush()
        self.console.print(Text.assemble((f"{stamp} {label} | ", colour), (printable("now: " + ", ".join(parts)), "dim")))

    def _throttled_progress(self, event: Event) -> str | None:
        now = time.monotonic()
        text = progress_text(event)
        phase = event.fields()["phase"]
        last = self._last_progress.get(who(event))
        finished = event.fields()["pct"] == 100.0
        if last and last[1] == phase and now - last[0] < PLAIN_PROGRESS_EVERY and not finished:
            return None
        self._last_progress[who(event)] = (now, phase)
        return text


def line(names: _Names, event: AnyEvent, text: str) -> Text:
    label, colour = names.label(who(event))
    stamp = time.strftime("%H:%M:%S", time.localtime(event.ts or time.time()))
    bad = isinstance(event, Event) and (event.KIND in ("error", "phase.error") or (event.KIND == "state" and event.fields()["state"] in ("fatal", "unresponsive")))
    style = "red" if bad else None
    return Text.assemble((f"{stamp} {label} | ", colour), (printable(text), style))


class LiveRenderer:
    """A TTY view: one progress bar per engine, log lines scrolling above."""

    def __init__(self, console: Console | None = None, *, saver: ShotSaver | None = None) -> None:
        self.console = console or Console(highlight=False)
        self.names = _Names()
        self.saver = saver
        self.bars = Progress(
            TextColumn("{task.fields[label]}"),
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}", style="dim"),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self._rate_from: dict[str, tuple[str, float, float]] = {}  # engine -> (phase, ts, done) at its start
        self._rate_shown: dict[str, str] = {}
        self.bars.start()

    def seed(self, engine: dict[str, Any]) -> None:
        """Start an engine's bar from a snapshot, before any event came."""
        task = self._task(named(engine))
        progress = engine.get("progress") or {}
        label, style = BAR_STATES.get(engine["state"], (engine.get("phase") or engine["state"], ""))
        self.bars.update(task, description=Text(printable(label), style), detail=printable((progress.get("detail") or "")[:40]))
        if progress.get("pct") is not None:
            self.bars.update(task, description=printable(engine.get("phase") or progress.get("phase") or label), total=100.0, completed=progress["pct"])

    def handle(self, event: AnyEvent) -> None:
        if isinstance(event, Event) and event.engine:
            self._update_bar(event)
        text = describe(event)
        if self.saver and (path := self.saver.handle(event)):
            text = f"{text} -> {path}"
        if text is not None:
            self.bars.console.print(line(self.names, event, text))

    def _task(self, engine: str) -> TaskID:
        if engine not in self.tasks:
            label, colour = self.names.label(engine)
            self.tasks[engine] = self.bars.add_task("", total=None, label=Text(label, colour), count="", rate="", detail="")
        return self.tasks[engine]

    def _update_bar(self, event: Event) -> None:
        task = self._task(who(event))
        f = event.fields()
        if event.KIND == "progress":
            count = f"{f['done']}/{f['total']}" if f["done"] is not None and f["total"] is not None else ""
            total = 100.0 if f["pct"] is not None else None
            rate = self._rate(who(event), f["phase"], event.ts, f["done"])
            self.bars.update(task, description=printable(f["phase"]), total=total, completed=f["pct"] or 0, count=count, rate=rate, detail=printable(f["detail"][:40]))
        elif event.KIND == "phase.start":
            self.bars.update(task, description=printable(f["phase"]), total=None, completed=0, count="", detail="")
        elif event.KIND == "state" and f["state"] == "exited" and _cause(f) == "stopped":
            self.bars.update(task, description=Text("stopped", "dim"), detail="")
        elif event.KIND == "state" and f["state"] in BAR_STATES:
            label, style = BAR_STATES[f["state"]]
            self.bars.update(task, description=Text(label, style), detail=printable(f["reason"][:40]) if f["state"] != "starting" else "")
            if f["state"] == "starting":
                self.bars.start_task(task)
        elif event.KIND == "exit":
            if f["code"] == 0:
                self.bars.update(task, description="done", total=100, completed=100, detail="")
            else:
                failed = f"exit {f['code']}" if f["signal"] is None else f["signame"]
                self.bars.update(task, description=Text(failed, "red"), detail="")
            self.bars.stop_task(task)

    def _rate(self, engine: str, phase: str, ts: float, done: float | None) -> str:
        """Units per second since the phase's first progress event with a count
        (kept as it was by progress events without one)."""
        start, shown = self._rate_from.get(engine), self._rate_shown.get(engine, "")
        if done is None:
            return shown if start is not None and start[0] == phase else ""
        if start is None or start[0] != phase or done < start[2]:
            self._rate_from[engine] = (phase, ts, done)
            shown = ""
        elif ts > start[1]:
            shown = f"{(done - start[2]) / (ts - start[1]):,.1f}/s"
        self._rate_shown[engine] = shown
        return shown

    def flush(self) -> None:
        """(The live view draws on its own refresh.)"""

    def close(self) -> None:
        self.bars.stop()


BAR_STATES = {
    "starting": ("starting", ""),
    "unresponsive": ("UNRESPONSIVE", "bold red"),
    "backoff": ("backoff", "yellow"),
    "fatal": ("FATAL", "bold red"),
}


class ShotSaver:
    """Writes each screenshot, byte for byte, as DIR/<gseq>-<engine>-<name>.

    Never overwrites: a name already taken (an earlier run) gets -1, -2, ...
    before its extension."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.saved: list[Path] = []

    def handle(self, event: AnyEvent) -> Path | None:
        if not (isinstance(event, Event) and event.KIND == "screenshot"):
            return None
        f = event.fields()
        base = Path(f"{event.gseq or 0:06d}-{_safe(who(event))}-{_safe(f['name'])}")
        for attempt in range(10_000):
            name = base.name if attempt == 0 else f"{base.stem}-{attempt}{base.suffix}"
            try:
                with open(self.dir / name, "xb") as out:
                    out.write(f["data"])
            except FileExistsError:
                continue
            self.saved.append(self.dir / name)
            return self.dir / name
        raise OSError(f"cannot find a free file name for {base} in {self.dir}")

    def close(self) -> None:
        pass  # each file is closed as it is written


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return cleaned or "unnamed"
