"""examples/webapp: the seeds' AuditRunner on bus, run by a real uvicorn, read by real WebSocket clients."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import EXAMPLES, ROOT

import websockets.sync.client as websockets_client  # (the examples extra, in the test extra)

sys.path.insert(0, str(EXAMPLES))
from audit_engine import issues_on, pages_of  # noqa: E402  (the engine's own rules: what it will render)
from pngdraw import page_screenshot  # noqa: E402

pytestmark = pytest.mark.timeout(120)

SITES = {"shop.example": 3, "blog.example": 4, "docs.example": 5}


@pytest.fixture
def server(runtime_dir: Path) -> Iterator[str]:
    """uvicorn on port 0 running the example; stopped (SIGTERM, as a service manager does) at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES / "webapp"), "app:app", "--port", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT, env={**os.environ, "DEMO_PACE": "0.05"},
    )
    lines: queue.Queue[str] = queue.Queue()
    rest: list[str] = []

    def drain() -> None:  # (a thread: select on a buffered pipe misses lines already read into its buffer)
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.put(line)
            rest.append(line)
        lines.put("")

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        url = None
        while url is None:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                line = ""
            assert line, f"uvicorn did not start (exit {proc.poll()}): {rest}"
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        yield url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # (uvicorn >= 0.29 re-raises the signal it handled)
        reader.join(10)
        assert any("Application shutdown complete" in line for line in rest), rest  # the app closed its bus
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def post(base: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"{base}/audits", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]


def get(base: str, path: str) -> bytes:
    with urllib.request.urlopen(f"{base}{path}", timeout=60) as reply:
        return reply.read()  # type: ignore[no-any-return]


def follow(base: str, audit_id: str) -> list[dict[str, Any]]:
    """Everything one WebSocket client gets, up to and with the last message."""
    got = []
    with websockets_client.connect(base.replace("http://", "ws://") + f"/audits/{audit_id}", open_timeout=30) as ws:
        while not got or got[-1]["kind"] != "end":
            got.append(json.loads(ws.recv(timeout=60)))
    return got


def test_three_audits_three_clients_one_late_every_event_once_and_the_shots_byte_for_byte(server: str) -> None:
    started: dict[str, str] = {}
    posting = [threading.Thread(target=lambda s=site, n=pages: started.__setitem__(s, post(server, {"url": f"https://{s}/", "pages": n})["id"])) for site, pages in SITES.items()]
    for t in posting:
        t.start()
    for t in posting:
        t.join(60)
    assert len(set(started.values())) == 3
    late_site = "docs.example"
    streams: dict[str, list[dict[str, Any]]] = {}
    live = [threading.Thread(target=lambda s=site: streams.__setitem__(s, follow(server, started[s]))) for site in SITES if site != late_site]
    for t in live:
        t.start()
    over = json.loads(get(server, f"/audits/{started[late_site]}?wait=true"))
    assert over["state"] == "exited" and over["code"] == 0
    streams[late_site] = follow(server, started[late_site])  # connects only after its audit has ended
    for t in live:
        t.join(90)

    for site, pages in SITES.items():
        audit_id, got = started[site], streams[site]
        events, end = got[:-1], got[-1]
        assert {e["engine"] for e in events} == {audit_id}, "another audit's events in this stream"
        gseqs = [e["gseq"] for e in events]
        assert gseqs == sorted(set(gseqs)), "out of order, or twice"
        seqs = [e["seq"] for e in events if e["seq"] is not None]
        assert seqs == list(range(1, len(seqs) + 1)), "an event of the engine is missing"
        kinds = [e["kind"] for e in events]
        assert kinds[0] == "state" and kinds[-1] == "state" and events[-1]["state"] == "exited"
        assert {"hello", "phase.start", "phase.done", "progress", "log", "result", "exit"} <= set(kinds)
        paths = pages_of(site, pages)
        assert kinds.count("finding") == sum(issues_on(site, p) for p in paths)
        result = next(e for e in events if e["kind"] == "result")
        assert result["summary"] == {"site": site, "pages": pages, "findings": kinds.count("finding")}
        assert end == {"kind": "end", "state": "exited", "code": 0, "signal": "", "result": result["summary"]}
        shots = [e for e in events if e["kind"] == "screenshot"]
        assert [s["name"] for s in shots] == [f"{p.strip('/') or 'home'}.png" for p in paths]
        assert all("data" not in s for s in shots), "screenshot bytes in the stream"
        for shot, path in zip(shots, paths):
            body = get(server, shot["url"])
            expected = page_screenshot(site, path, issues_on(site, path))
            assert len(body) == shot["size"] and hashlib.sha256(body).hexdigest() == hashlib.sha256(expected).hexdigest()

    again = follow(server, started["shop.example"])  # a reconnect gets the whole audit again
    assert again == streams["shop.example"]


def test_an_engine_that_only_prints_markers_streams_unchanged(server: str) -> None:
    audit_id = post(server, {"url": "https://legacy.example/", "legacy": True})["id"]
    got = follow(server, audit_id)
    kinds = [e["kind"] for e in got]
    assert {"phase.start", "progress", "finding", "screenshot", "result"} <= set(kinds)
    assert got[-1]["kind"] == "end" and got[-1]["code"] == 0 and got[-1]["result"] == {"pages": 10, "broken": 1}
    shot = next(e for e in got if e["kind"] == "screenshot")
    assert get(server, shot["url"]) == page_screenshot("legacy.example", "/old-page", 1)


def test_bad_requests_are_refused_with_a_reason(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as bad:
        post(server, {"url": "ftp://nowhere"})
    assert bad.value.code == 422 and b"not an http(s) URL" in bad.value.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(server, "/audits/audit-nope/shots/1")
    assert missing.value.code == 404
