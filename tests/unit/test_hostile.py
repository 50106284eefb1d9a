"""Hostile input for every decoder a peer can reach: engine messages, published
messages, history batches, control requests and replies, and stdout markers.
Each returns its value or raises the protocol's own error (RemoteProtocolError),
nothing else, and whatever it accepts is valid (it re-encodes to the same thing)."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_protocol import SAMPLES

from bus.protocol import Event, LocalProtocolError, RemoteProtocolError, UnknownEvent, decode, decode_published, encode, split_batch
from bus.protocol.control import Request, decode_reply, decode_request
from bus.protocol.legacy import parse_marker
from bus.protocol.limits import MAX_NAME, MAX_TEXT

# msgpack values a hostile peer can send: every type msgpack has, ext and timestamps included.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.binary(max_size=20),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    st.builds(msgpack.Timestamp, st.integers(0, 2**33), st.integers(0, 999_999_999)),
)
keys = st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1), st.binary(max_size=4))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=20)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12,
)
marker_keys = st.sampled_from(["phase", "pct", "done", "total", "detail", "kind", "event", "message", "level", "name", "mime", "data", "summary", "ts", "type"])
json_objects = st.dictionaries(marker_keys | st.text(max_size=6), json_values, max_size=6) | json_values


def packed(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, strict_types=False, datetime=False)


def accepted(frames: list[bytes], strict: bool) -> Event | UnknownEvent | None:
    try:
        event = decode(frames, from_engine=strict)
    except RemoteProtocolError:
        return None
    assert isinstance(event, (Event, UnknownEvent))
    if isinstance(event, Event):
        assert decode(encode(event)) == event
        for name, value in event.fields().items():
            if isinstance(value, float):
                assert math.isfinite(value), f"{name} accepted a non-finite number"
            if isinstance(value, str):
                assert len(value) <= MAX_TEXT
        assert len(event.engine) <= MAX_NAME
    return event


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SAMPLES)), st.data(), st.booleans())
def test_mutated_valid_messages_decode_or_raise_the_protocol_error(kind: str, data: st.DataObject, strict: bool) -> None:
    """Close-to-valid garbage finds the most bugs: flip, cut, insert and repeat bytes of real messages."""
    frames = [bytearray(f) for f in encode(SAMPLES[kind])]
    for _ in range(data.draw(st.integers(1, 6))):
        frame = frames[data.draw(st.integers(0, len(frames) - 1))]
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        at = data.draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "flip" and frame:
            frame[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del frame[at:]
        elif op == "insert":
            frame[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "repeat":
            frame[at:at] = frame[at : at + data.draw(st.integers(1, 16))]
    if data.draw(st.booleans()):
        frames.append(bytearray(data.draw(st.binary(max_size=16))))
    accepted([bytes(f) for f in frames], strict)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=8), st.sampled_from(sorted(SAMPLES)), st.booleans())
def test_any_msgpack_in_any_field_decodes_or_raises_the_protocol_error(extra: dict[Any, Any], kind: str, strict: bool) -> None:
    header = msgpack.unpackb(encode(SAMPLES[kind])[0])
    for key, value in extra.items():  # overwrite real fields and add strange ones (non-string keys too)
        header[key if not isinstance(key, str) or not header else list(header)[hash(key) % len(header)]] = value
    blobs = encode(SAMPLES[kind])[1:]
    try:
        frame = packed(header)
    except (TypeError, ValueError, OverflowError):
        return
    accepted([frame, *blobs], strict)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=5), st.lists(st.integers(-2, 6) | st.booleans() | st.none(), max_size=5))
def test_published_and_batch_decoders_never_raise_anything_else(frames: list[bytes], counts: list[Any]) -> None:
    for call in (lambda: decode_published(frames), lambda: split_batch(frames, counts)):
        try:
            call()
        except RemoteProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.dictionaries(st.sampled_from(["op", "id", "v", "n", "after", "until", "run", "kinds", "engines", "name", "since", "last"]) | keys, values, max_size=6).map(packed)))
def test_control_requests_and_replies_decode_or_raise_the_protocol_error(frame: bytes) -> None:
    try:
        request = decode_request(frame)
        assert isinstance(request, Request) and isinstance(request.op, str)
    except RemoteProtocolError:
        pass
    try:
        assert isinstance(decode_reply(frame)["ok"], bool)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.builds(lambda v: "##PROGRESS:" + json.dumps(v), json_objects)))
def test_stdout_markers_parse_or_raise_the_protocol_error(line: str) -> None:
    try:
        event = parse_marker(line, engine="legacy", ts=1.0)
    except RemoteProtocolError:
        return
    assert decode(encode(event)) == event


@pytest.mark.parametrize(
    "line",
    [
        '##PROGRESS:{"type": [null]}',         # an unhashable type
        "##PROGRESS:" + "[" * 60_000,          # nested deeper than Python recurses
        '##PROGRESS:{"pct": 1' + "0" * 400 + "}",  # a number no float holds
        '##PROGRESS:{"done": 18446744073709551616}',  # an integer msgpack cannot carry (found by hypothesis)
        '##PROGRESS:{"pct": 1' + "0" * 5000 + "}",  # more digits than Python converts
        '##PROGRESS:{"type": "finding", "data": ' + '{"a":' * 50 + "1" + "}" * 50 + "}",
    ],
)
def test_marker_bombs_are_rejected(line: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_marker(line, engine="legacy", ts=1.0)
    assert caught.value.reason == "bad-marker"


@pytest.mark.parametrize(
    "frame",
    [
        b"\xdf\xff\xff\xff\xff",            # a map announcing 4 billion entries, holding none
        b"\xdd\xff\xff\xff\xff",            # the same for an array
        b"\xdb\xff\xff\xff\xff" + b"a" * 8,  # a 4 GiB string, 8 bytes long
        b"\x91" * 100_000 + b"\xc0",        # 100,000 nested arrays
        b"\x81\xa1a" * 100_000 + b"\xc0",   # 100,000 nested maps
    ],
)
def test_bombs_are_rejected_cheaply(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        decode([frame], from_engine=True)
    assert caught.value.reason in ("bad-msgpack", "not-a-map", "bad-field")


progress_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2**64 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1, 101), st.text(max_size=3), st.just("x" * 129), st.just("a.b-c_1"), st.just("bad name"),
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["engine", "seq", "ts", "gseq", "phase", "done", "total", "pct", "detail", "extra"]), progress_values, max_size=10), st.booleans())
def test_the_fast_progress_decoder_agrees_with_the_full_checks(fields: dict[str, Any], strict: bool) -> None:
    from bus.protocol import Progress
    from bus.protocol.codec import _build, fast_progress

    header = {"v": 1, "kind": "progress", "ts": 5.0, **fields}
    fast = fast_progress(header, strict)
    try:
        slow = _slow(header, strict)
    except RemoteProtocolError:
        slow = None
    if fast is None:
        return  # declined: the full checks decide
    assert slow is not None, "the fast path accepted what the full checks refuse"
    if header.get("ts") is None:  # both took the time now: compare the rest
        assert {k: v for k, v in vars_of(fast).items() if k != "ts"} == {k: v for k, v in vars_of(slow).items() if k != "ts"}
    else:
        assert vars_of(fast) == vars_of(slow)  # same values, same types (an int ts becomes a float in both)
    assert isinstance(_build(Progress, header, (), strict), Progress)


def _slow(header: dict[str, Any], strict: bool) -> Any:
    """The full checks alone (what `_build` does when the fast path declines)."""
    from bus.protocol import Progress
    from bus.protocol.codec import COMMON_FIELDS

    kwargs = {n: header[n] for n in COMMON_FIELDS + Progress.HEADER_FIELDS if header.get(n) is not None}
    if strict:
        kwargs.pop("gseq", None)
    try:
        return Progress(**kwargs)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(str(exc), reason=exc.reason) from None


def vars_of(event: Any) -> dict[str, Any]:
    return {name: (type(getattr(event, name)), getattr(event, name)) for name in type(event).FIELD_NAMES}


def test_ordinary_progress_takes_the_fast_path() -> None:
    from bus.protocol.codec import fast_progress

    for header in ({"engine": "a.1", "seq": 4, "ts": 1.5, "phase": "scan", "done": 3, "total": 12, "detail": "x"}, {"engine": "a", "seq": 1, "ts": 2, "pct": 40}):
        fast = fast_progress({"v": 1, "kind": "progress", **header}, True)
        assert fast is not None and vars_of(fast) == vars_of(_slow(header, True))


def test_an_engine_header_is_republished_as_it_came_only_when_that_is_safe() -> None:
    from bus.protocol.codec import decode_engine, stamp_header

    base = {"v": 1, "kind": "log", "engine": "a", "seq": 3, "ts": 1.5, "message": "hi", "level": "info", "stream": "engine"}
    event, raw = decode_engine([packed(base)])
    assert raw is not None and decode([stamp_header(raw, 42)]) == event.stamped(42)
    duplicate = b"\x89" + packed(base)[1:] + b"\xa7message\xa5other"  # "message" twice: decoders disagree on which wins
    unsafe = [
        [packed({**base, "extra": 1})],            # a key we do not know
        [packed({**base, "gseq": 9})],             # the engine set gseq
        [packed({k: v for k, v in base.items() if k != "ts"})],  # no ts: the supervisor's time is used
        [packed({**base, "ts": None})],
        [duplicate],
    ]
    for frames in unsafe:
        event, raw = decode_engine(frames)
        assert raw is None, frames


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([k for k, e in sorted(SAMPLES.items()) if e.ORIGIN == "engine"]), st.data())
def test_a_republished_header_decodes_to_the_event_the_supervisor_checked(kind: str, data: st.DataObject) -> None:
    from bus.protocol.codec import decode_engine, stamp_header

    frames = encode(SAMPLES[kind])
    header = msgpack.unpackb(frames[0])
    for key in data.draw(st.lists(st.sampled_from(sorted(header)), max_size=3)):
        if key not in ("v", "kind"):
            header[key] = data.draw(progress_values)
    try:
        event, raw = decode_engine([packed(header), *frames[1:]])
    except RemoteProtocolError:
        return
    if raw is not None:
        assert decode([stamp_header(raw, 7), *frames[1:]]) == event.stamped(7)
