from __future__ import annotations

import msgpack
import pytest

from bus.protocol import RemoteProtocolError
from bus.protocol.control import decode_reply, decode_request, encode_error, encode_reply, encode_request, request_id_of


def test_history_request_defaults_and_round_trip() -> None:
    request = decode_request(encode_request("history", 7, after=10, kinds=["log"]))
    assert request.op == "history" and request.id == 7
    assert request.args == {"after": 10, "until": None, "last": None, "since": None, "limit": None, "kinds": ["log"], "engines": None, "run": None}


@pytest.mark.parametrize(
    "body, reason, words",
    [
        ({"op": "reboot"}, "unknown-op", "unknown request 'reboot'; known: down, forget, hello, history, job, jobs, restart, retry, runs, snapshot, spawn, start, status, stop, submit, take"),
        ({"op": 5}, "bad-request", "'op' must be a string"),
        ({"op": "history", "after": "x"}, "bad-request", "argument 'after' has the wrong type"),
        ({"op": "history", "after": -1}, "bad-request", "must be >= 0"),
        ({"op": "history", "kinds": [1]}, "bad-request", "must be a list of strings"),
        ({"op": "history", "last": True}, "bad-request", "wrong type"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(body, reason, words) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_request(msgpack.packb(body))
    assert info.value.reason == reason
    assert words in str(info.value)


def test_replies() -> None:
    assert decode_reply(encode_reply(3, last=9)) == {"v": 1, "id": 3, "ok": True, "last": 9}
    assert decode_reply(encode_error(3, "unknown-op", "nope"))["error"] == "nope"
    with pytest.raises(RemoteProtocolError):
        decode_reply(msgpack.packb({"id": 1}))


def test_the_id_of_a_request_that_cannot_be_decoded_is_read_when_it_can_be() -> None:
    pack = lambda **f: msgpack.packb(f, use_bin_type=True)  # noqa: E731
    assert request_id_of(pack(op="nope", id=5)) == 5
    assert request_id_of(pack(op="take", id="r-1")) == "r-1"
    assert request_id_of(pack(op="status", id=True)) is None  # (a bool is no id)
    assert request_id_of(pack(op="status", id=[1])) is None
    assert request_id_of(b"\xc1 garbage") is None and request_id_of(msgpack.packb([1, 2])) is None
