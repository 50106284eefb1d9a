"""The pump (one thread for every engine, supervisor/pump.py) cuts output into the
same lines as the reader threads it replaced (supervisor/children.py `read_lines`,
which Windows and `bus attach` still use), however the bytes arrive."""

from __future__ import annotations

import os
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from bus.process import Inbox, OutputLines, read_lines
from bus.supervisor.pump import Lines

MAX_LINE = 8


def by_threads(data: bytes) -> list[tuple[str, int]]:
    read_fd, write_fd = os.pipe()
    inbox = Inbox(maxsize=100_000, max_bytes=1 << 30)
    reader = threading.Thread(target=read_lines, args=(None, "stdout", os.fdopen(read_fd, "rb"), inbox, MAX_LINE))
    reader.start()
    os.write(write_fd, data)
    os.close(write_fd)
    reader.join(10)
    items = inbox.drain(1_000_000)
    inbox.close()
    return [(text, cut) for item in items if isinstance(item, OutputLines) for text, cut, _ in item.lines]


def by_pump(chunks: list[bytes]) -> list[tuple[str, int]]:
    lines = Lines(MAX_LINE)
    out = [line for chunk in chunks for line in lines.take(chunk, 0.0)]
    if lines.pending():
        out.append(lines.finish(0.0))
    return [(text, cut) for text, cut, _ in out]


pieces = st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r\n", b"\r", b"x" * 7, b"y" * 8, b"z" * 9, b"\xff", "é".encode()]), max_size=30)


@settings(max_examples=300, deadline=None)
@given(pieces, st.data())
def test_the_pump_makes_the_lines_the_reader_threads_made(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert by_pump(chunks) == by_threads(stream)


def test_edge_cases_by_hand() -> None:
    for stream in (b"", b"\n", b"12345678\n", b"1234567\n", b"123456789\n", b"abcdefghijk", b"a\r\nb", b"12345678"):
        assert by_pump([stream]) == by_threads(stream), stream
        assert by_pump([bytes([c]) for c in stream]) == by_threads(stream), stream
