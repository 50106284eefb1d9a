"""Control requests and replies (the supervisor's ROUTER socket). No I/O here.

A client sends `["", request]` (the empty frame is the REQ envelope, so REQ and
DEALER clients both work); the supervisor answers `["", reply, *frames]`.
Both are msgpack maps. See docs/PROTOCOL.md, "Control".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from .codec import unpack_header
from .errors import CONTROL_ERRORS, ENGINE_REJECTS, RemoteProtocolError
from .limits import MAX_ITEMS, MAX_NAME, PROTOCOL_VERSION

MAX_HISTORY_BATCH = 1000  # events in one history reply
MAX_HISTORY_BYTES = 32 * 1024 * 1024  # frame bytes in one history reply (at least one event is sent)

REQUIRED = object()
MAP_LISTS = {"jobs"}  # list arguments of maps (the others are lists of strings)
MAX_WAIT = 3600.0     # seconds a request may ask to be held (take, job)

# op -> {argument: (accepted types, default or REQUIRED)}
OPS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "hello": {
        "engine": ((str, type(None)), None),
        "subscriber": ((str, type(None)), None),  # a subscriber saying how far it is in `run` (`at`), and whether that run ended for it (`done`)
        "run": ((str, type(None)), None),
        "at": ((int, type(None)), None),
        "done": ((bool,), False),
    },
    "status": {},
    "runs": {},
    "snapshot": {},
    "down": {},
    "spawn": {"name": ((str,), REQUIRED), "engine": ((dict,), REQUIRED), "token": ((str, type(None)), None)},  # engine: the keys of an engine's TOML table; token: supervisor.json's (local TCP)
    "forget": {"name": ((str,), REQUIRED)},
    "start": {"name": ((str,), REQUIRED)},
    "stop": {"name": ((str,), REQUIRED)},
    "restart": {"name": ((str,), REQUIRED)},
    # Work queues (docs/PROTOCOL.md section 10).
    "submit": {"queue": ((str,), REQUIRED), "jobs": ((list,), REQUIRED), "ids": ((list, type(None)), None), "partial": ((bool,), False)},
    "take": {"queue": ((str,), REQUIRED), "engine": ((str,), REQUIRED), "pid": ((int, type(None)), None),
             "credit": ((int,), 1), "wait": ((int, float), 30.0)},
    "jobs": {"queue": ((str, type(None)), None), "state": ((str, type(None)), None), "ids": ((list, type(None)), None), "limit": ((int,), 1000)},
    "job": {"job": ((str,), REQUIRED), "wait": ((int, float, type(None)), None)},
    "retry": {"job": ((str,), REQUIRED)},
    "history": {
        "after": ((int,), 0),
        "until": ((int, type(None)), None),
        "last": ((int, type(None)), None),
        "since": ((int, float, type(None)), None),
        "limit": ((int, type(None)), None),
        "kinds": ((list, type(None)), None),
        "engines": ((list, type(None)), None),
        "run": ((str, type(None)), None),
    },
}


@dataclass(frozen=True, slots=True)
class Request:
    op: str
    id: Any = None
    args: dict[str, Any] = field(default_factory=dict)


def encode_request(op: str, req_id: Any = None, **args: Any) -> bytes:
    return msgpack.packb({"v": PROTOCOL_VERSION, "op": op, "id": req_id, **args}, use_bin_type=True)


def request_id_of(frame: bytes | memoryview) -> Any:
    """The `id` of a request that could not be decoded or answered, for its error reply
    (None when the frame is not a msgpack map, or has no id)."""
    try:
        body = unpack_header(frame)
    except RemoteProtocolError:
        return None
    req_id = body.get("id")
    return req_id if isinstance(req_id, (int, str, bytes)) and not isinstance(req_id, bool) else None


def decode_request(frame: bytes | memoryview) -> Request:
    body = unpack_header(frame)
    op = body.get("op")
    req_id = body.get("id")
    if not isinstance(op, str):
        raise RemoteProtocolError(f"request field 'op' must be a string, got {op!r}", reason="bad-request")
    spec = OPS.get(op)
    if spec is None:
        raise RemoteProtocolError(
            f"unknown request {op!r}; known: {', '.join(sorted(OPS))}", reason="unknown-op"
        )
    args: dict[str, Any] = {}
    for name, (types, default) in spec.items():
        if default is REQUIRED and name not in body:
            raise RemoteProtocolError(f"{op}: argument {name!r} is required", reason="bad-request")
        value = body.get(name, default)
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise RemoteProtocolError(f"{op}: argument {name!r} has the wrong type: {value!r}", reason="bad-request")
        if name == "wait" and value is not None:
            value = float(value)
        if isinstance(value, int) and value < 0:
            raise RemoteProtocolError(f"{op}: argument {name!r} must be >= 0, got {value}", reason="bad-request")
        if isinstance(value, list) and name in MAP_LISTS:
            if len(value) > MAX_ITEMS or not all(isinstance(x, dict) for x in value):
                raise RemoteProtocolError(f"{op}: argument {name!r} must be a list of at most {MAX_ITEMS:,} maps", reason="bad-request")
        elif isinstance(value, list) and (len(value) > MAX_ITEMS or not all(isinstance(x, str) for x in value)):
            raise RemoteProtocolError(f"{op}: argument {name!r} must be a list of strings", reason="bad-request")
        if name == "wait" and value is not None and not 0 <= value <= MAX_WAIT:
            raise RemoteProtocolError(f"{op}: argument {name!r} must be from 0 to {MAX_WAIT:g} seconds, got {value!r}", reason="bad-request")
        if isinstance(value, str) and len(value) > MAX_NAME:
            raise RemoteProtocolError(f"{op}: argument {name!r} is longer than {MAX_NAME} characters", reason="bad-request")
        args[name] = value
    return Request(op=op, id=req_id, args=args)


def encode_reply(req_id: Any, **fields: Any) -> bytes:
    return msgpack.packb({"v": PROTOCOL_VERSION, "id": req_id, "ok": True, **fields}, use_bin_type=True)


def encode_error(req_id: Any, code: str, message: str) -> bytes:
    """An error reply; `code` is one of CONTROL_ERRORS, or the decoding reason of a request that could not be read."""
    if code not in CONTROL_ERRORS and code not in ENGINE_REJECTS:
        raise ValueError(f"undeclared control error code {code!r}")
    return msgpack.packb(
        {"v": PROTOCOL_VERSION, "id": req_id, "ok": False, "code": code, "error": message}, use_bin_type=True
    )


def decode_reply(frame: bytes | memoryview) -> dict[str, Any]:
    body = unpack_header(frame)
    if not isinstance(body.get("ok"), bool):
        raise RemoteProtocolError("reply has no boolean 'ok'", reason="bad-reply")
    return body
