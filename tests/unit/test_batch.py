"""The SDK's batches: how a burst is cut into messages, and that the supervisor's
reading of a batch frame gives back each header as it was."""

from __future__ import annotations

import msgpack
import pytest

from bus.engine.batch import _messages, batch_frame
from bus.protocol import RemoteProtocolError
from bus.protocol.codec import batch_headers, is_batch
from bus.protocol.limits import MAX_BATCH, MAX_BATCH_BYTES


def header(seq: int, pad: int = 0) -> bytes:
    return msgpack.packb({"v": 1, "kind": "progress", "engine": "e", "seq": seq, "ts": 1.0, "detail": "x" * pad})


@pytest.mark.parametrize("n", [2, 15, 16, 17, 1000, MAX_BATCH])
def test_a_batch_frame_gives_back_each_header_byte_for_byte(n: int) -> None:
    headers = [header(i) for i in range(1, n + 1)]
    frame = batch_frame(headers)
    assert is_batch(frame) and not is_batch(headers[0])
    assert batch_headers(frame) == headers
    assert msgpack.unpackb(frame) == [msgpack.unpackb(h) for h in headers]  # a plain msgpack array of the maps


def test_a_burst_becomes_batches_in_order_and_an_event_with_blobs_goes_alone() -> None:
    shot = [b"screenshot header", b"\x89PNG"]
    items = [[header(1)], [header(2)], shot, [header(4)], [header(5)], [header(6)]]
    messages = _messages(items)
    assert [count for _, count in messages] == [2, 1, 3]
    assert batch_headers(messages[0][0][0]) == [header(1), header(2)]
    assert messages[1][0] == shot
    assert batch_headers(messages[2][0][0]) == [header(4), header(5), header(6)]


def test_a_lone_event_is_sent_in_the_single_event_form() -> None:
    assert _messages([[header(1)]]) == [([header(1)], 1)]
    assert _messages([[b"a", b"blob"], [header(2)]]) == [([b"a", b"blob"], 1), ([header(2)], 1)]


def test_batches_keep_to_the_event_and_byte_limits() -> None:
    many = _messages([[header(i)] for i in range(2 * MAX_BATCH + 5)])
    assert [count for _, count in many] == [MAX_BATCH, MAX_BATCH, 5]
    big = header(1, pad=60_000)
    heavy = _messages([[big]] * 10)
    assert all(len(frames[0]) <= MAX_BATCH_BYTES for frames, _ in heavy)
    assert sum(count for _, count in heavy) == 10 and len(heavy) > 1


@pytest.mark.parametrize(
    ("frame", "reason"),
    [(msgpack.packb([1]), "bad-batch"), (b"\xdc\x04\x01" + b"\xc0" * 1025, "bad-batch"), (b"\x93\x01\x02", "bad-msgpack"), (b"\x92\xc1\xc1", "bad-msgpack")],
)
def test_a_bad_batch_frame_is_refused_with_its_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        batch_headers(frame)
    assert caught.value.reason == reason
