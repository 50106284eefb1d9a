"""The README's demo, for real: `bus up examples/demo.toml`, with `bus tail --json`
started before the run and another started during it."""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib
from collections import defaultdict
from pathlib import Path

from helpers import EXAMPLES, Collector, bus

sys.path.insert(0, str(EXAMPLES))
import pngdraw  # noqa: E402
from audit_engine import issues_on, pages_of  # noqa: E402
from tagger_engine import ALBUMS  # noqa: E402

FULL = {"phase.start", "phase.done", "progress", "log", "finding", "screenshot", "result", "exit"}


def expected_screenshots() -> dict[str, bytes]:
    """sha256 -> PNG bytes of every image the demo engines render (they are deterministic)."""
    images = [pngdraw.page_screenshot("legacy.example", "/old-page", 1)]
    for site, count in (("shop.example", 8), ("docs.example", 5)):
        images += [pngdraw.page_screenshot(site, path, issues_on(site, path)) for path in pages_of(site, count)]
    images += [pngdraw.cover_art(album) for album in ALBUMS]
    return {hashlib.sha256(png).hexdigest(): png for png in images}


def assert_valid_png(data: bytes) -> None:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, kinds, idat = 8, [], b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        kinds.append(kind)
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)


def read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_demo_streams_everything_to_tails_started_before_and_during(runtime_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DEMO_PACE", "0.3")
    shots = tmp_path / "shots"
    before = bus("tail", "--json", "--shots", str(shots), stdout=open(tmp_path / "before.jsonl", "w"))
    first_shot = Collector(lambda e: e.kind == "screenshot")
    first_shot.start()
    demo = bus("up", "examples/demo.toml", stdout=open(tmp_path / "demo.out", "w"))
    try:
        assert first_shot.reached.wait(60), "no screenshot came"
        during = bus("tail", "--json", stdout=open(tmp_path / "during.jsonl", "w"))
        assert demo.wait(60) == 0, (tmp_path / "demo.out").read_text() + demo.stderr.read()
        assert before.wait(60) == 0, before.stderr.read()
        assert during.wait(60) == 0, during.stderr.read()
    finally:
        for proc in (demo, before):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    events = read_json_lines(tmp_path / "before.jsonl")
    assert [e["gseq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["kind"] == "sup.stop" and events[-1]["code"] == 0
    assert read_json_lines(tmp_path / "during.jsonl") == events, "the tail started mid-run printed the same events"
    assert [e.gseq for e in first_shot.finish()] == [e["gseq"] for e in events]

    kinds_by_engine = defaultdict(set)
    for event in events:
        kinds_by_engine[event["engine"]].add(event["kind"])
    complete = [name for name, kinds in kinds_by_engine.items() if FULL <= kinds]
    assert len(complete) >= 3, dict(kinds_by_engine)
    assert all(e["code"] == 0 for e in events if e["kind"] == "exit")

    expected = expected_screenshots()
    sent = [e for e in events if e["kind"] == "screenshot"]
    assert sorted(e["sha256"] for e in sent) == sorted(expected)
    files = sorted(shots.iterdir())
    assert len(files) == len(sent)
    for path, event in zip(files, sorted(sent, key=lambda e: e["gseq"])):
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == event["sha256"]
        assert len(data) == event["size"]
        assert_valid_png(data)
    assert {p.name for p in files} >= {"%06d-legacy-old-page.png" % next(e["gseq"] for e in sent if e["engine"] == "legacy")}
