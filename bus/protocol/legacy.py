"""Legacy `##PROGRESS:{json}` stdout markers, both ways.

Programs written before the bus print lines such as
`##PROGRESS:{"phase": "scan", "pct": 40}`; the supervisor turns each into the
event it stands for, so they work unmodified. The SDK, when no supervisor is
in its environment, prints the same markers (`format_marker`), so an engine
ported to the SDK still works under an old parent that parses stdout.

The JSON object's `type` names the event; without it, it is progress. Both our
kind names and the older spellings seen in the wild are accepted
(`phase_start`, `phase_complete`, `phase_error`). Screenshots carry their bytes
in base64 under `data`, the one place base64 is accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Callable

from .errors import LocalProtocolError, RemoteProtocolError
from .limits import MAX_TEXT
from .events import (
    EngineError,
    Event,
    Finding,
    Heartbeat,
    Log,
    PhaseCompleted,
    PhaseFailed,
    PhaseStarted,
    Progress,
    Result,
    Screenshot,
)

MARKER = "##PROGRESS:"

ALIASES = {
    "phase_start": "phase.start",
    "phase_started": "phase.start",
    "phase_complete": "phase.done",
    "phase_completed": "phase.done",
    "phase_done": "phase.done",
    "phase_error": "phase.error",
    "phase_failed": "phase.error",
}


def is_marker(line: str) -> bool:
    return line.lstrip().startswith(MARKER)


def parse_marker(line: str, *, engine: str, ts: float) -> Event:
    """The event a marker line stands for. Raises RemoteProtocolError if unusable."""
    text = line.lstrip()[len(MARKER) :].strip()
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested deeper than Python recurses
        raise RemoteProtocolError(f"marker is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}", reason="bad-marker") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError("marker must hold a JSON object", reason="bad-marker")
    kind = obj.pop("type", None) or "progress"
    if not isinstance(kind, str):
        raise RemoteProtocolError(f"marker type must be a string, got {type(kind).__name__}", reason="bad-marker")
    kind = ALIASES.get(kind, kind)
    build = _BUILDERS.get(kind)
    if build is None:
        raise RemoteProtocolError(f"marker type {kind!r} is not known", reason="bad-marker")
    marker_ts = obj.pop("ts", None)
    if isinstance(marker_ts, (int, float)) and not isinstance(marker_ts, bool) and math.isfinite(marker_ts):
        ts = float(marker_ts)
    try:
        return build(obj, {"engine": engine, "ts": ts})
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"marker: {exc}", reason="bad-marker") from None
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError, binascii.Error) as exc:
        raise RemoteProtocolError(f"marker {kind!r} is missing or has a bad field: {str(exc)[:200]}", reason="bad-marker") from None


def line_event(engine: str, stream: str, text: str, cut: int, ts: float) -> tuple[Event, str]:
    """What one output line of an engine becomes, and what it was: "marker" (a
    legacy marker on stdout, as its event), "bad-marker" or "line" (a `log`
    event; a line cut at the length limit says how much was cut)."""
    said = "line"
    if stream == "stdout" and is_marker(text) and not cut:
        try:
            return parse_marker(text, engine=engine, ts=ts), "marker"
        except RemoteProtocolError:
            said = "bad-marker"  # not understood: still shown, as the line it was
    if cut:
        text = f"{text[: MAX_TEXT - 64]} [... {cut} more bytes cut]"
    elif len(text) <= MAX_TEXT and stream in _OUTPUT_STREAMS:
        return _plain_log(engine, ts, text, stream), said
    return Log(engine=engine, ts=ts, message=text, stream=stream), said  # type: ignore[arg-type]


_OUTPUT_STREAMS = ("stdout", "stderr")
_NEW, _SET = object.__new__, object.__setattr__


def _plain_log(engine: str, ts: float, message: str, stream: str) -> Log:
    """The Log an output line makes, built without running its checks: the engine's name
    is one the supervisor runs, the line a str within MAX_TEXT, the stream and level
    valid, `ts` a finite float from the clock. (The hottest path of a chatty engine.)"""
    event = _NEW(Log)
    for name, value in (("engine", engine), ("seq", None), ("ts", ts), ("gseq", None), ("origin", None), ("origin_gseq", None), ("job", None), ("message", message), ("level", "info"), ("stream", stream)):
        _SET(event, name, value)
    return event


def _text(obj: dict[str, Any], *keys: str) -> str:
    parts = [str(obj[k]) for k in keys if obj.get(k) not in (None, "")]
    return ": ".join(parts)


def _progress(obj: dict[str, Any], common: dict[str, Any]) -> Event:
    pct = obj.get("pct", obj.get("percent"))
    if pct is not None:
        if isinstance(pct, bool) or not isinstance(pct, (int, float)):
            raise ValueError(f"pct must be a number, got {pct!r}")
        pct = min(100.0, max(0.0, float(pct)))  # old programs overshoot; keep the line
    return Progress(
        phase=str(obj.get("phase") or ""),
        done=obj.get("done"),
        total=obj.get("total"),
        pct=pct,
        detail=_text(obj, "step", "detail"),
        **common,
    )


def _rest(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) and len(obj) == 1 else obj


def _screenshot(obj: dict[str, Any], common: dict[str, Any]) -> Event:
    data = base64.b64decode(obj["data"], validate=True)
    return Screenshot(
        name=str(obj.get("name") or "screenshot.png"),
        mime=str(obj.get("mime") or "image/png"),
        size=len(data),
        data=data,
        **common,
    )


_BUILDERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Event]] = {
    "progress": _progress,
    "phase.start": lambda o, c: PhaseStarted(phase=o["phase"], detail=_text(o, "step", "detail"), **c),
    "phase.done": lambda o, c: PhaseCompleted(
        phase=o["phase"], elapsed=o.get("elapsed"), detail=_text(o, "step", "detail"), **c
    ),
    "phase.error": lambda o, c: PhaseFailed(
        phase=o["phase"], message=_text(o, "message") or _text(o, "error", "detail"), **c
    ),
    "log": lambda o, c: Log(message=str(o.get("message", "")), level=o.get("level", "info"), **c),
    "finding": lambda o, c: Finding(data=_rest(o, "data"), **c),
    "result": lambda o, c: Result(summary=_rest(o, "summary"), **c),
    "error": lambda o, c: EngineError(
        message=str(o.get("message", "")), type=str(o.get("error_type", "")), fatal=bool(o.get("fatal", False)), **c
    ),
    "screenshot": _screenshot,
    "heartbeat": lambda o, c: Heartbeat(**c),
}


def format_marker(event: Event) -> str | None:
    """The marker line for an event, or None for kinds markers do not carry."""
    if event.KIND not in _BUILDERS or event.KIND in ("log", "heartbeat"):
        return None
    obj: dict[str, Any] = {"type": event.KIND, "ts": event.ts}
    if isinstance(event, Screenshot):
        obj.update(name=event.name, mime=event.mime, data=base64.b64encode(event.data).decode("ascii"))
    elif isinstance(event, Finding):
        obj["data"] = event.data
    elif isinstance(event, Result):
        obj["summary"] = event.summary
    elif isinstance(event, EngineError):
        obj.update(message=event.message, error_type=event.type, fatal=event.fatal)
    else:
        obj.update({k: v for k, v in event.fields().items() if v not in (None, "")})
    return MARKER + json.dumps(obj, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot write {type(value).__name__} in a marker")
