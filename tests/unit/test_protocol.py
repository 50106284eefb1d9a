from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.protocol import (
    KINDS,
    PROTOCOL_VERSION,
    EngineBye,
    EngineError,
    EngineExited,
    EngineHello,
    EngineState,
    Event,
    Finding,
    Heartbeat,
    JobDead,
    JobDone,
    JobEnd,
    JobFailed,
    JobQueued,
    JobRetried,
    JobStarted,
    LocalProtocolError,
    Log,
    PhaseCompleted,
    PhaseFailed,
    PhaseStarted,
    Progress,
    RemoteProtocolError,
    Result,
    Screenshot,
    SupervisorStarted,
    SupervisorStopped,
    UnknownEvent,
    Upstream,
    Welcome,
    decode,
    decode_published,
    encode,
    encode_published,
    split_batch,
    topic,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
COMMON = {"engine": "audit.2", "seq": 7, "ts": 1_700_000_000.25}

SAMPLES: dict[str, Event] = {
    "hello": EngineHello(pid=4242, sdk="bus-py/0.1.0", host="box", **COMMON),
    "heartbeat": Heartbeat(**COMMON),
    "phase.start": PhaseStarted(phase="scan", detail="https://example.org/", **COMMON),
    "phase.done": PhaseCompleted(phase="scan", elapsed=1.5, detail="12 pages", **COMMON),
    "phase.error": PhaseFailed(phase="scan", message="timeout after 30s", **COMMON),
    "progress": Progress(phase="scan", done=3, total=12, detail="/about", **COMMON),
    "log": Log(message="héllo wörld ✓", level="warning", stream="stderr", **COMMON),
    "screenshot": Screenshot(name="home.png", mime="image/png", size=len(PNG), data=PNG, **COMMON),
    "finding": Finding(data={"url": "/", "score": 0.5, "tags": ["a", "b"], "raw": b"\x00\x01", "n": None, "deep": {"x": [1, 2]}}, **COMMON),
    "result": Result(summary={"pages": 12, "ok": True}, **COMMON),
    "error": EngineError(message="boom", type="ValueError", traceback="Traceback ...", fatal=True, **COMMON),
    "bye": EngineBye(sent=41, dropped=2, **COMMON),
    "state": EngineState(state="running", prev="pending", pid=99, reason="pid 99", engine="audit.2", ts=1.0, gseq=3),
    "exit": EngineExited(pid=99, signal=9, signame="SIGKILL", runtime=2.5, engine="audit.2", ts=2.0, gseq=4),
    "sup.start": SupervisorStarted(run="abc123", pid=1, version="0.1.0", engines=["audit.1", "legacy"], ts=1.0, gseq=1),
    "sup.stop": SupervisorStopped(code=0, reason="all engines exited", ts=3.0, gseq=9),
    "welcome": Welcome(run="abc123", last=8, ts=3.0),
    "job.end": JobEnd(ok=False, error="no such page", retry=True, job="j-12", **COMMON),
    "job.queued": JobQueued(job="j-12", queue="library", payload={"path": "/music/a.flac"}, attempt=0, engine="", ts=1.5, gseq=2),
    "job.started": JobStarted(job="j-12", queue="library", attempt=1, engine="audit.2", ts=1.6, gseq=5),
    "job.done": JobDone(job="j-12", queue="library", attempt=1, result={"tags": 3}, runtime=0.25, engine="audit.2", ts=1.9, gseq=6),
    "job.failed": JobFailed(job="j-12", queue="library", attempt=1, error="no such page", engine="audit.2", ts=1.9, gseq=6),
    "job.retried": JobRetried(job="j-12", queue="library", attempt=1, reason="audit.2 was killed (SIGKILL)", engine="audit.2", ts=1.9, gseq=6),
    "job.dead": JobDead(job="j-12", queue="library", attempt=3, error="no such page", engine="audit.2", ts=1.9, gseq=6),
    "upstream": Upstream(state="started", address="tcp://10.0.0.5:7010", run="r1", pid=7, engines=["audit"], origin="east", origin_gseq=1, ts=3.5, gseq=10),
}


def test_every_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_round_trip(kind: str) -> None:
    event = SAMPLES[kind]
    frames = encode(event)
    assert len(frames) == 1 + len(event.BLOB_FIELDS)
    assert all(isinstance(f, (bytes, memoryview)) for f in frames)
    back = decode(frames)
    assert back == event
    assert type(back) is type(event)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_published_round_trip_puts_topic_first(kind: str) -> None:
    event = SAMPLES[kind].stamped(17)
    frames = encode_published(event)
    assert frames[0] == f"{kind}/{event.engine}/{event.origin or ''}".encode()  # a hub puts the origin last
    back = decode_published(frames)
    assert back == event and back.gseq == 17


def test_header_is_a_plain_msgpack_map_with_version_and_kind() -> None:
    header = msgpack.unpackb(encode(SAMPLES["progress"])[0], raw=False)
    assert header["v"] == PROTOCOL_VERSION
    assert header["kind"] == "progress"
    assert header == {
        "v": 1, "kind": "progress", "engine": "audit.2", "seq": 7, "ts": 1_700_000_000.25,
        "phase": "scan", "done": 3, "total": 12, "pct": 25.0, "detail": "/about",
    }


def test_screenshot_bytes_travel_as_their_own_raw_frame() -> None:
    header, blob = encode(SAMPLES["screenshot"])
    assert blob == PNG
    assert PNG not in header  # no base64, no embedded copy
    assert msgpack.unpackb(header)["size"] == len(PNG)


def test_progress_computes_pct_from_done_and_total() -> None:
    assert Progress(done=1, total=4).pct == 25.0
    assert Progress(done=5, total=4).pct == 100.0  # overshoot is capped, not refused
    assert Progress(done=3, total=0).pct is None
    assert Progress().pct is None


def test_stamped_copies_without_touching_the_original() -> None:
    event = SAMPLES["log"]
    numbered = event.stamped(5)
    assert numbered.gseq == 5 and event.gseq is None
    assert numbered.message == event.message


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Progress(pct=140), "progress: pct must be between 0 and 100, got 140"),
        (lambda: Progress(done=-1), "progress: done must be >= 0"),
        (lambda: Progress(done="3"), "progress.done must be a finite number, got str '3'"),
        (lambda: Progress(pct=math.nan), "progress.pct must be a finite number"),
        (lambda: Log(message=5), "log.message must be a string"),
        (lambda: Log(message="x", level="loud"), "log.level must be one of 'debug', 'info'"),
        (lambda: PhaseStarted(phase=""), "phase.start.phase must be a non-empty string"),
        (lambda: Screenshot(name="a.png", size=3, data=b"ab"), "screenshot: size says 3 bytes but the data has 2"),
        (lambda: Screenshot(name="a.png", mime="png", size=2, data=b"ab"), "screenshot.mime must be"),
        (lambda: Screenshot(name="a.png", size=2, data="ab"), "screenshot.data must be bytes"),
        (lambda: Finding(data={1: "x"}), "finding.data key must be a string"),
        (lambda: Finding(data={"x": object()}), "finding.data.x must be nil, boolean, number"),
        (lambda: Finding(data=[1]), "finding.data must be a map"),
        (lambda: Log(message="x", engine="has/slash"), "log.engine must be a string"),
        (lambda: Log(message="x", seq=-1), "log.seq must be a non-negative integer"),
        (lambda: Log(message="x", seq=True), "log.seq must be a non-negative integer"),
        (lambda: EngineExited(pid=1), "exit: exactly one of code and signal must be set"),
        (lambda: EngineBye(sent=1.5), "bye.sent must be a non-negative integer"),
    ],
)
def test_invalid_events_cannot_be_built(build: Any, message: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        build()
    assert message in str(info.value)


def test_nesting_is_bounded() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(12):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(LocalProtocolError, match="nests deeper than 8"):
        Finding(data=deep)


def header(**fields: Any) -> bytes:
    return msgpack.packb({"v": 1, "kind": "log", "engine": "e", "seq": 1, "ts": 1.0, "message": "m", **fields})


@pytest.mark.parametrize(
    "frames, reason",
    [
        ([], "no-frames"),
        ([b"\xc1\xc1\xc1"], "bad-msgpack"),
        ([b"\x92\x01\x02"], "not-a-map"),
        ([b"\xa3abc"], "not-a-map"),
        ([msgpack.packb({"kind": "log"})], "bad-version"),
        ([msgpack.packb({"v": "1", "kind": "log"})], "bad-version"),
        ([msgpack.packb({"v": 1, "kind": 3})], "bad-kind"),
        ([msgpack.packb({"v": 1, "kind": "telepathy", "engine": "e"})], "unknown-kind"),
        ([msgpack.packb({"v": 2, "kind": "log", "engine": "e"})], "newer-version"),
        ([msgpack.packb({"v": 1, "kind": "state", "engine": "e", "state": "running"})], "reserved-kind"),
        ([header(message=12)], "bad-field"),
        ([header(level="shouting")], "bad-field"),
        ([msgpack.packb({"v": 1, "kind": "phase.start", "engine": "e"})], "missing-field"),
        ([msgpack.packb({"v": 1, "kind": "screenshot", "engine": "e", "name": "a", "size": 1})], "bad-frames"),
        ([header(), b"extra"], "bad-frames"),
        ([header()[:-3]], "bad-msgpack"),  # truncated
        ([b"\x82\xa1v\x01\xa4kind\xa3\xff\xfe\xfd"], "bad-utf8"),
        ([b"\x81\x01\x02"], "bad-msgpack"),  # integer map key
        ([b"\x80" + b"\x00" * (1024 * 1024 + 1)], "too-large"),
    ],
)
def test_engine_garbage_is_rejected_with_a_reason(frames: list[bytes], reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(frames, from_engine=True)
    assert info.value.reason == reason


def test_engine_cannot_choose_its_global_sequence_number() -> None:
    event = decode([header(gseq=99)], from_engine=True)
    assert event.gseq is None


def test_clients_skip_unknown_kinds_and_newer_versions_instead_of_failing() -> None:
    future = decode([msgpack.packb({"v": 1, "kind": "telepathy", "engine": "e", "gseq": 5, "mood": "calm"}), b"blob"])
    assert isinstance(future, UnknownEvent)
    assert (future.kind, future.engine, future.gseq, future.header["mood"], future.blobs) == ("telepathy", "e", 5, "calm", (b"blob",))
    newer = decode([msgpack.packb({"v": 9, "kind": "log", "engine": "e", "message": 3})])
    assert isinstance(newer, UnknownEvent) and newer.version == 9
    assert decode(encode(future)) == future  # can be forwarded unchanged


def test_topic_allows_prefix_filtering_by_kind_and_exact_engine() -> None:
    assert topic("progress", "audit") == b"progress/audit/"
    assert not topic("progress", "audit2").startswith(topic("progress", "audit"))
    assert topic("sup.stop", "") == b"sup.stop//"


def test_split_batch_checks_frame_counts() -> None:
    frames = [*encode(SAMPLES["log"]), *encode(SAMPLES["screenshot"])]
    events = split_batch(frames, [1, 2])
    assert events == [SAMPLES["log"], SAMPLES["screenshot"]]
    for counts in ([1, 1], [1, 3], [0, 3], [True, 2]):
        with pytest.raises(RemoteProtocolError):
            split_batch(frames, counts)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=20), st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
field_names = st.sampled_from(["v", "kind", "engine", "seq", "ts", "gseq", "phase", "done", "total", "pct", "message", "level", "stream", "name", "mime", "size", "data", "summary", "pid", "code", "signal", "sent"])
kinds = st.one_of(st.sampled_from(sorted(KINDS)), st.text(max_size=10))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=4), st.booleans())
def test_decoder_on_arbitrary_frames_returns_an_event_or_its_own_error(frames: list[bytes], strict: bool) -> None:
    try:
        event = decode(frames, from_engine=strict)
    except RemoteProtocolError:
        return
    assert isinstance(event, (Event, UnknownEvent))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(field_names, values, max_size=10), kinds, st.sampled_from([1, 1, 1, 2, 0]), st.lists(st.binary(max_size=50), max_size=2), st.booleans())
def test_decoder_on_plausible_headers_returns_an_event_or_its_own_error(fields: dict[str, Any], kind: str, version: int, blobs: list[bytes], strict: bool) -> None:
    frame = msgpack.packb({**fields, "v": version, "kind": kind}, use_bin_type=True)
    try:
        event = decode([frame, *blobs], from_engine=strict)
    except RemoteProtocolError:
        return
    assert isinstance(event, (Event, UnknownEvent))
    if isinstance(event, Event):
        assert decode(encode(event)) == event  # whatever was accepted is valid and re-encodes
