"""Events to frames and frames to events. No sockets here (after h11).

An event on the wire is `[header, *blobs]`: one msgpack map with string keys,
then one raw frame per blob field (a screenshot's bytes). What the supervisor
publishes puts a topic frame first: `[topic, header, *blobs]`, with the topic
`"<kind>/<engine>/"` so SUB prefix filters select by kind and by engine.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Iterable, Sequence

import msgpack
import msgspec

from .errors import LocalProtocolError, RemoteProtocolError
from .events import COMMON_FIELDS, KINDS, AnyEvent, Event, Progress, UnknownEvent
from .limits import ENGINE_NAME, INT_END, INT_MIN, MAX_BATCH, MAX_BLOB, MAX_HEADER, MAX_NAME, MAX_TEXT, PROTOCOL_VERSION

Buffer = bytes | bytearray | memoryview

# msgpack out: msgspec writes the same bytes as msgpack.packb(use_bin_type=True), in C, about 2.5x
# faster for the small maps of the hot path. (For large ones msgpack's packer is kept: msgspec grows
# its buffer by reallocation, and 200 MB of 60 KB log lines left the supervisor's peak RSS 25-35 MiB
# higher, tests/integration/test_engine_output.py.)
pack = msgspec.msgpack.Encoder().encode
SMALL_TEXT = 2048  # characters: a log line up to this long is packed by msgspec


def pack_event_header(event: AnyEvent, gseq: int | None = None) -> bytes:
    """`header_map(event, gseq)` packed, by msgspec when it is small."""
    header = header_map(event, gseq)
    if event.kind in ("progress", "state", "heartbeat", "hello", "bye", "phase.start", "phase.done", "exit", "welcome") or (
        event.kind == "log" and len(header.get("message", "")) <= SMALL_TEXT
    ):
        return pack(header)
    return msgpack.packb(header, use_bin_type=True)
_RAWS = msgspec.msgpack.Decoder(list[msgspec.Raw])


def topic(kind: str, engine: str) -> bytes:
    return f"{kind}/{engine}/".encode()


def topic_of(event: AnyEvent) -> bytes:
    """`<kind>/<engine>/`, and the origin's label after it for what a hub relays."""
    if event.origin:
        return f"{event.kind}/{event.engine}/{event.origin}".encode()
    return topic(event.kind, event.engine)


def header_map(event: AnyEvent, gseq: int | None = None) -> dict[str, Any]:
    """The header as a map; nil values are left out (absent means default). `gseq`:
    the number to put in it instead of the event's own (saves a numbered copy)."""
    if isinstance(event, UnknownEvent):
        header = dict(event.header)
        if event.gseq is not None or gseq is not None:
            header["gseq"] = event.gseq if gseq is None else gseq
        return header
    cls = type(event)
    names = _HEADER_FIELDS.get(cls)
    if names is None:
        names = _HEADER_FIELDS[cls] = (COMMON_FIELDS[:3], COMMON_FIELDS[4:] + cls.HEADER_FIELDS)
    before, after = names
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "kind": cls.KIND}
    for name in before:
        value = getattr(event, name)
        if value is not None:
            header[name] = value
    if gseq is None:
        gseq = event.gseq
    if gseq is not None:
        header["gseq"] = gseq
    for name in after:
        value = getattr(event, name)
        if value is not None:
            header[name] = value
    return header


# Per kind: the header's field names before gseq and after it, in order.
_HEADER_FIELDS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}
assert COMMON_FIELDS[3] == "gseq"


def encode(event: AnyEvent) -> list[Buffer]:
    """`[header, *blobs]`, as an engine sends it (and as history replies carry it)."""
    header = pack_event_header(event)
    if len(header) > MAX_HEADER:
        raise LocalProtocolError(
            f"{event.kind}: encoded header is {len(header)} bytes, more than {MAX_HEADER}",
            reason="too-large",
        )
    if isinstance(event, UnknownEvent):
        return [header, *event.blobs]
    return [header, *(getattr(event, name) for name in event.BLOB_FIELDS)]


def encode_published(event: AnyEvent) -> list[Buffer]:
    """`[topic, header, *blobs]`, as the supervisor publishes it."""
    return [topic_of(event), *encode(event)]


def _reject(message: str, reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, reason=reason)


def unpack_header(frame: Buffer) -> dict[str, Any]:
    if len(frame) > MAX_HEADER:
        raise _reject(f"header frame is {len(frame)} bytes, more than {MAX_HEADER}", "too-large")
    try:
        header = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True)
    except UnicodeDecodeError as exc:
        raise _reject(f"header has a string that is not valid UTF-8: {exc.reason}", "bad-utf8") from None
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise _reject(f"header is not valid msgpack: {type(exc).__name__}: {exc}", "bad-msgpack") from None
    if not isinstance(header, dict):
        raise _reject(f"header must be a msgpack map, got {type(header).__name__}", "not-a-map")
    return header


def decode(frames: Sequence[Buffer], *, from_engine: bool = False) -> AnyEvent:
    """Frames `[header, *blobs]` to an event.

    Clients (`from_engine=False`) get an `UnknownEvent` for kinds or protocol
    versions they do not know, so they can skip it. The supervisor reading
    engines (`from_engine=True`) is strict: unknown or supervisor-only kinds and
    newer versions are rejected. Garbage raises `RemoteProtocolError`.
    """
    if not frames:
        raise _reject("message has no frames", "no-frames")
    return _decode(frames, unpack_header(frames[0]), from_engine)


def decode_engine(frames: Sequence[Buffer]) -> tuple[Event, bytes | None]:
    """What the supervisor reads from an engine: the event (as `decode(frames,
    from_engine=True)`) and its header frame when that can be published as it
    came, with `gseq` added by `stamp_header` (saves re-encoding it); None when
    it must be re-encoded: keys we do not know or twice, no `ts`, `gseq` set by
    the engine, or a map too big for a one-byte header."""
    if not frames:
        raise _reject("message has no frames", "no-frames")
    raw = frames[0]
    header = unpack_header(raw)
    event = _decode(frames, header, True)
    assert isinstance(event, Event)
    first = raw[0]
    if 0x80 <= first < 0x8F and first - 0x80 == len(header) and header.get("ts") is not None and header.keys() <= _PLAIN_KEYS[event.KIND]:
        return event, bytes(raw)
    return event, None


def stamp_header(header: bytes, gseq: int) -> bytes:
    """An engine's header (a msgpack fixmap, from `decode_engine`) with `gseq` added."""
    return bytes((header[0] + 1,)) + header[1:] + b"\xa4gseq" + pack(gseq)


def is_batch(frame: Buffer) -> bool:
    """A batch frame: a msgpack array (fixarray, array 16 or array 32), not a map."""
    return len(frame) > 0 and (0x90 <= frame[0] <= 0x9F or frame[0] in (0xDC, 0xDD))


def batch_headers(frame: Buffer) -> list[bytes]:
    """As `batch_raws`, each element copied out as bytes."""
    return [bytes(raw) for raw in batch_raws(frame)]


def batch_raws(frame: Buffer) -> list[msgspec.Raw]:
    """The header frames a batch frame holds (each element, as the bytes it was): one event
    each, to decode as a single-event message `[header]`. RemoteProtocolError when the frame
    is not an array of at most MAX_BATCH elements; each element is checked when decoded."""
    if len(frame) > MAX_HEADER:
        raise _reject(f"batch frame is {len(frame)} bytes, more than {MAX_HEADER}", "too-large")
    try:
        raws = _RAWS.decode(frame)
    except msgspec.DecodeError as exc:
        raise _reject(f"batch frame is not a valid msgpack array: {exc}", "bad-msgpack") from None
    if not 2 <= len(raws) <= MAX_BATCH:
        raise _reject(f"a batch holds 2 to {MAX_BATCH} events, this one {len(raws)}", "bad-batch")
    return raws


def _decode(frames: Sequence[Buffer], header: dict[str, Any], from_engine: bool) -> AnyEvent:
    blobs = tuple(frames[1:])
    version = header.get("v")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _reject(f"header field 'v' must be a protocol version >= 1, got {version!r}", "bad-version")
    kind_name = header.get("kind")
    if not isinstance(kind_name, str):
        raise _reject(f"header field 'kind' must be a string, got {kind_name!r}", "bad-kind")
    cls = KINDS.get(kind_name)
    if from_engine:
        if version > PROTOCOL_VERSION:
            raise _reject(f"protocol version {version} is newer than {PROTOCOL_VERSION}", "newer-version")
        if cls is None:
            raise _reject(f"unknown event kind {kind_name!r}", "unknown-kind")
        if cls.ORIGIN == "supervisor":  # "launcher" kinds (exit) are checked by the supervisor: remote engines only
            raise _reject(f"kind {kind_name!r} is sent only by the supervisor", "reserved-kind")
    if cls is None or version > PROTOCOL_VERSION:
        return _unknown(kind_name, version, header, blobs)
    return _build(cls, header, blobs, from_engine)


def _build(cls: type[Event], header: dict[str, Any], blobs: tuple[Buffer, ...], from_engine: bool) -> Event:
    if cls is Progress and not blobs:
        event = fast_progress(header, from_engine)
        if event is not None:
            return event
    if len(blobs) != len(cls.BLOB_FIELDS):
        raise _reject(
            f"{cls.KIND}: expected {len(cls.BLOB_FIELDS)} frame(s) after the header, got {len(blobs)}",
            "bad-frames",
        )
    kwargs: dict[str, Any] = {}
    for name in COMMON_FIELDS + cls.HEADER_FIELDS:
        if name in header and header[name] is not None:
            kwargs[name] = header[name]
    if from_engine:
        for name in ("gseq", "origin", "origin_gseq"):
            kwargs.pop(name, None)  # only the supervisor numbers events, only a hub labels them
    for name, blob in zip(cls.BLOB_FIELDS, blobs):
        if len(blob) > MAX_BLOB:
            raise _reject(f"{cls.KIND}.{name} is {len(blob)} bytes, more than {MAX_BLOB}", "too-large")
        kwargs[name] = blob if isinstance(blob, (bytes, memoryview)) else memoryview(blob)
    try:
        return cls(**kwargs)
    except LocalProtocolError as exc:
        raise _reject(str(exc), exc.reason) from None
    except TypeError as exc:  # a required field is missing
        missing = str(exc).split("argument", 1)[-1].strip(": ")
        raise _reject(f"{cls.KIND}: missing required field {missing}", "missing-field") from None


def _unknown(kind_name: str, version: int, header: dict[str, Any], blobs: tuple[Buffer, ...]) -> UnknownEvent:
    def get(name: str, types: type | tuple[type, ...], default: Any) -> Any:
        value = header.get(name, default)
        return value if isinstance(value, types) and not isinstance(value, bool) else default

    return UnknownEvent(
        kind=kind_name,
        version=version,
        engine=get("engine", str, ""),
        seq=get("seq", int, None),
        ts=float(get("ts", (int, float), 0.0)),
        gseq=get("gseq", int, None),
        origin=get("origin", str, None),
        header=header,
        blobs=tuple(b if isinstance(b, (bytes, memoryview)) else memoryview(b) for b in blobs),
    )


def decode_sent(frames: Sequence[Buffer]) -> list[AnyEvent]:
    """What an engine sent, read by anything but the supervisor (a test, a plain zmq.proxy's
    reader): the one event of a single-event message, or each event of a batch, in order."""
    if frames and is_batch(frames[0]):
        if len(frames) > 1:
            raise _reject(f"a batch is one frame, this message has {len(frames)}", "bad-frames")
        return [decode([header]) for header in batch_headers(frames[0])]
    return [decode(frames)]


def decode_published(frames: Sequence[Buffer]) -> AnyEvent:
    """Frames `[topic, header, *blobs]` as received from the supervisor's PUB."""
    if len(frames) < 2:
        raise _reject(f"published message needs a topic and a header, got {len(frames)} frame(s)", "no-frames")
    return decode(frames[1:])


def split_batch(frames: Sequence[Buffer], counts: Iterable[int]) -> list[AnyEvent]:
    """Decode a history reply body: events laid end to end, `counts[i]` frames each."""
    events: list[AnyEvent] = []
    at = 0
    for count in counts:
        if not isinstance(count, int) or isinstance(count, bool) or count < 1 or at + count > len(frames):
            raise _reject("history reply frame counts do not match its frames", "bad-frames")
        events.append(decode(frames[at : at + count]))
        at += count
    if at != len(frames):
        raise _reject("history reply has frames left over", "bad-frames")
    return events


_NEW = object.__new__
_SET = object.__setattr__
_INF = float("inf")
_LIMIT = 2**63


def _number(v: Any) -> bool:
    kind = type(v)
    return (kind is float and -_INF < v < _INF) or (kind is int and INT_MIN <= v < INT_END)  # an int msgpack can carry


def plain_progress(phase: Any, done: Any, total: Any, pct: Any, detail: Any) -> bool:
    """True when these progress fields are valid as they are: what the Progress
    checks would accept without changing anything but pct's type. The SDK's and
    the decoder's fast paths take it; anything else goes the full way, which says
    what is wrong. (NaN fails every comparison, and inf fails `< inf`.)"""
    return (
        type(phase) is str and len(phase) <= MAX_NAME
        and type(detail) is str and len(detail) <= MAX_TEXT
        and (done is None or (_number(done) and done >= 0))
        and (total is None or (_number(total) and total >= 0))
        and (pct is None or (_number(pct) and 0 <= pct <= 100))
    )


def fast_progress(header: dict[str, Any], from_engine: bool) -> Event | None:
    """The hottest event, checked inline: the same Progress `_build` would make, or
    None when anything is unusual (then the full checks run and say what is wrong)."""
    get = header.get
    engine, seq, ts, phase, done, total, pct, detail, job = (
        get("engine"), get("seq"), get("ts"), get("phase"), get("done"), get("total"), get("pct"), get("detail"), get("job"),
    )
    gseq = None if from_engine else get("gseq")
    if not from_engine and ("origin" in header or "origin_gseq" in header):
        return None  # relayed by a hub: the full checks take the labels
    engine = "" if engine is None else engine
    phase = "" if phase is None else phase
    detail = "" if detail is None else detail
    if not (
        type(engine) is str and len(engine) <= MAX_NAME and (not engine or ENGINE_NAME.fullmatch(engine))
        and (seq is None or (type(seq) is int and 0 <= seq < _LIMIT))
        and (gseq is None or (type(gseq) is int and 0 <= gseq < _LIMIT))
        and (ts is None or _number(ts))
        and plain_progress(phase, done, total, pct, detail)
        and (job is None or (type(job) is str and 0 < len(job) <= MAX_NAME))
    ):
        return None
    if pct is None:
        if done is not None and total:
            pct = min(100.0, 100.0 * done / total)
    else:
        pct = float(pct)
    event = _NEW(Progress)
    for name, value in (
        ("engine", engine), ("seq", seq), ("ts", time.time() if ts is None else float(ts)), ("gseq", gseq), ("origin", None), ("origin_gseq", None), ("job", job),
        ("phase", phase), ("done", done), ("total", total), ("pct", pct), ("detail", detail),
    ):
        _SET(event, name, value)
    return event


# Per kind: the header keys an engine's header may hold to be published as it came.
_PLAIN_KEYS = {name: frozenset(("v", "kind", "engine", "seq", "ts", "job", *cls.HEADER_FIELDS)) for name, cls in KINDS.items()}


def jsonable(value: Any) -> Any:
    """Event values as JSON can hold them: bytes become {"base64": ...}, tuples lists.
    (Typed events hold no other non-JSON values: the field checks refuse non-finite
    floats and non-string map keys.)"""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value
