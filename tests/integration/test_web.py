"""`bus web` end to end: a supervisor running the demo's engines, the dashboard,
and Debian's Chromium driven by Playwright (no browser download: .ci/install-chromium
installs the chromium package; BUS_CHROMIUM points elsewhere)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from helpers import EXAMPLES, bus, bus_result, scripted, start_web, stop_web

sys.path.insert(0, str(EXAMPLES))
import pngdraw  # noqa: E402
from audit_engine import issues_on, pages_of  # noqa: E402
from tagger_engine import ALBUMS  # noqa: E402

CHROMIUM = os.environ.get("BUS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# What the machine's probe found Chromium needs here: no sandbox as root, and no background calls to a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SITES = {"audit-shop": ("shop.example", 8), "audit-docs": ("docs.example", 6), "audit-blog": ("blog.example", 10)}
WAIT_MS = 60_000


def demo_config(directory: Path, hold: Path) -> Path:
    lines = ["[supervisor]", "stop_timeout = 5"]
    for name, (site, pages) in SITES.items():
        lines += [f'[engines."{name}"]', f'command = ["python", "audit_engine.py", "--site", "{site}", "--pages", "{pages}"]',
                  f'cwd = {json.dumps(str(EXAMPLES))}', f'env = {{ DEMO_PACE = "0.3", DEMO_HOLD = {json.dumps(str(hold))} }}']
    lines += ['[engines.tagger]', 'command = ["python", "tagger_engine.py", "--files", "30", "--workers", "3"]', f'cwd = {json.dumps(str(EXAMPLES))}']
    path = directory / "demo.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def expected_images() -> dict[str, set[str]]:
    """engine -> sha256 of every PNG it renders (the demo's images are deterministic)."""
    out = {name: {hashlib.sha256(pngdraw.page_screenshot(site, path, issues_on(site, path))).hexdigest() for path in pages_of(site, pages)} for name, (site, pages) in SITES.items()}
    out["tagger"] = {hashlib.sha256(pngdraw.cover_art(album)).hexdigest() for album in ALBUMS}
    return out


MODEL = "() => ({head: bus.head, cards: [...bus.cards.values()]})"
DRAWN = """() => [...document.querySelectorAll('section.card')].map(card => ({
    engine: card.dataset.engine, text: card.innerText, pct: card.dataset.pct, done: card.dataset.done,
    img: card.querySelector('img').getAttribute('src'), loaded: card.querySelector('img').complete && card.querySelector('img').naturalWidth > 0}))"""
def heartbeats_only(after: int, until: int) -> bool:
    """Every event the supervisor published in (after, until] is a heartbeat."""
    import zmq

    from bus.control_client import ControlClient
    from bus.runtime import resolve

    if until == after:
        return True
    with zmq.Context() as ctx:
        client = ControlClient(ctx, resolve(None), timeout=10)
        try:
            every, _ = client.request("history", after=after, until=until)
            beats, _ = client.request("history", after=after, until=until, kinds=["heartbeat"])
        finally:
            client.close()
    return bool(every["count"] == until - after == beats["count"])


HELD = """(names) => names.every(n => { const c = bus.cards.get(n);
    return c && c.logs.some(l => l.message === 'holding until DEMO_HOLD exists') && c.screenshot; })
  && bus.cards.get('tagger') && bus.cards.get('tagger').result
  && [...document.querySelectorAll('section.card img')].length === 4
  && [...document.querySelectorAll('section.card img')].every(img => img.complete && img.naturalWidth > 0)"""
FINISHED = """(names) => names.every(n => { const card = document.querySelector(`section.card[data-engine="${n}"]`);
    return card && card.dataset.result === 'yes' && card.dataset.pct === '100'; })
  && [...document.querySelectorAll('section.card img')].every(img => img.complete && img.naturalWidth > 0)"""


@pytest.mark.timeout(240)
def test_the_dashboard_shows_every_engine_survives_a_reload_and_follows_to_the_end(runtime_dir: Path, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: run .ci/install-chromium (Debian's chromium package) or set BUS_CHROMIUM")
    from playwright.sync_api import sync_playwright

    hold = tmp_path / "hold"
    launcher = bus("up", "-q", str(demo_config(tmp_path, hold)), stdout=open(tmp_path / "up.out", "w"))
    web, url = start_web()
    audits = list(SITES)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(url)

                # Mid-run: every audit engine is held halfway, the tagger is done; every card has its screenshot.
                page.wait_for_function(HELD, arg=audits, timeout=WAIT_MS)
                before, drawn_before = page.evaluate(MODEL), page.evaluate(DRAWN)
                served = json.loads(urllib.request.urlopen(url + "api/snapshot", timeout=10).read())
                assert before["cards"] == served["engines"], "the page's cards differ from the bridge's"
                held = {c["name"]: c["progress"] for c in before["cards"]}
                for name in audits:
                    assert held[name]["phase"] == "scan" and 0 < held[name]["done"] < held[name]["total"] == SITES[name][1]
                    assert 0 < held[name]["pct"] < 100
                assert held["tagger"]["pct"] == 100

                # A reload mid-run shows the same state as before.
                page.reload()
                page.wait_for_function(HELD, arg=audits, timeout=WAIT_MS)
                after, drawn_after = page.evaluate(MODEL), page.evaluate(DRAWN)
                # Heartbeats (which no card shows) may come in between: the head's gseq is the only thing they move.
                assert heartbeats_only(before["head"]["gseq"], after["head"]["gseq"])
                after["head"]["gseq"] = before["head"]["gseq"]
                assert after == before
                assert drawn_after == drawn_before
                assert page.evaluate("bus.snapshots") == 1

                # ... then continues: progress advances to the end, the results arrive.
                hold.touch()
                page.wait_for_function(FINISHED, arg=audits, timeout=WAIT_MS)
                page.wait_for_function("() => bus.head.ended", timeout=WAIT_MS)
                final = {c["name"]: c for c in page.evaluate(MODEL)["cards"]}
                expected = expected_images()
                for name in audits:
                    card = final[name]
                    site, pages = SITES[name]
                    assert card["progress"]["pct"] == 100 and card["phase"] == "report"
                    assert card["result"] == {"site": site, "pages": pages, "findings": card["findings_total"]}
                    assert card["shots_total"] == pages and card["exit"]["code"] == 0
                    assert card["state"] == "exited"
                for name, card in final.items():
                    image = page.request.get(url + card["screenshot"]["url"])
                    assert image.ok and image.headers["content-type"] == "image/png"
                    assert hashlib.sha256(image.body()).hexdigest() in expected[name], f"{name}: the image served is not one the engine rendered"
                assert not errors, errors
                png = page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
                assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
                if os.environ.get("BUS_WEB_SHOT"):  # where to keep the picture, e.g. docs/web-dashboard.png
                    Path(os.environ["BUS_WEB_SHOT"]).write_bytes(png)
            finally:
                browser.close()
        assert launcher.wait(60) == 0
    finally:
        hold.touch()
        if launcher.poll() is None:
            bus_result("down", timeout=60)
            launcher.wait(30)
        assert stop_web(web) == 0


class Feed:
    """A reader of the feed, applying it as the page does (snapshot replaces, update patches)."""

    def __init__(self, url: str) -> None:
        self.stream = urllib.request.urlopen(url + "feed", timeout=30)  # each read times out: a stalled feed fails the test
        self.view: dict[str, Any] = {}
        self.snapshots = 0

    def until(self, predicate: Any, what: str, limit: int = 100_000) -> dict[str, Any]:
        for _ in range(limit):
            if self.view and predicate(self.view):
                return self.view
            self._next()
        raise AssertionError(f"the feed never showed {what}: {self.view}")

    def _next(self) -> None:
        kind = data = None
        while (line := self.stream.readline()) not in (b"\n", b""):
            if line.startswith(b"event: "):
                kind = line[7:].strip().decode()
            elif line.startswith(b"data: "):
                data = json.loads(line[6:])
        assert line, "the feed closed"
        if kind == "snapshot":
            self.view, self.snapshots = data, self.snapshots + 1
            self.view["engines"] = {card["name"]: card for card in data["engines"]}
        elif kind == "update":
            self.view.update({k: v for k, v in data.items() if k != "engines"})
            for patch in data["engines"]:
                self.view["engines"].setdefault(patch["name"], {}).update(patch)


def test_the_bridge_waits_for_a_supervisor_and_follows_one_run_after_another(runtime_dir: Path) -> None:
    web, url = start_web()
    try:
        feed = Feed(url)
        feed.until(lambda v: v["run"] is None and not v["connected"], "a bridge waiting for a supervisor")
        first = bus_result("run", "-q", "--name", "first", "--", *scripted("--events", "30", "--seed", "1"), timeout=60)
        assert first.returncode == 0, first.stderr
        one = feed.until(lambda v: v["ended"] and v["run"] is not None, "the first run's end")
        card = one["engines"]["first"]
        assert card["result"] is not None and card["exit"]["code"] == 0 and card["state"] == "exited"
        assert set(one["engines"]) == {"first"} and one["note"].startswith("run ended: ")
        run_one = one["run"]
        second = bus_result("run", "-q", "--name", "second", "--", *scripted("--events", "10", "--seed", "2"), timeout=60)
        assert second.returncode == 0, second.stderr
        two = feed.until(lambda v: v["run"] != run_one and v["ended"], "the second run, to its end")
        assert set(two["engines"]) == {"second"}, "the first run's cards must not linger"
        assert two["engines"]["second"]["result"] is not None and feed.snapshots >= 2
    finally:
        assert stop_web(web) == 0


def test_the_feed_starts_with_a_snapshot_and_bad_requests_get_clear_answers(runtime_dir: Path) -> None:
    """No supervisor yet: the feed still opens, with a snapshot saying what it waits for."""
    web, url = start_web()
    try:
        with urllib.request.urlopen(url + "feed", timeout=10) as feed:
            assert feed.headers["Content-Type"] == "text/event-stream"
            assert feed.readline() == b"retry: 1000\n" and feed.readline() == b"\n"
            assert feed.readline() == b"id: 0\n" and feed.readline() == b"event: snapshot\n"
            snapshot = json.loads(feed.readline().removeprefix(b"data: "))
        assert snapshot["engines"] == [] and snapshot["run"] is None and snapshot["connected"] is False
        assert snapshot["note"].startswith("waiting for a supervisor at session 'default'")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "shots/nope/12", timeout=10)
        assert missing.value.code == 404 and "not kept here" in json.loads(missing.value.read())["error"]
        page = urllib.request.urlopen(url, timeout=10)
        assert "script-src 'self'" in page.headers["Content-Security-Policy"] and b'src="static/app.js"' in page.read()
    finally:
        assert stop_web(web) == 0


def test_bus_web_refuses_what_it_cannot_do_in_one_line(runtime_dir: Path) -> None:
    exposed = bus_result("web", "--host", "0.0.0.0", timeout=30)
    assert exposed.returncode == 2 and exposed.stderr.count("\n") == 1
    assert "beyond loopback" in exposed.stderr and "--public" in exposed.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = bus_result("web", "--port", str(port), timeout=30)
    assert busy.returncode == 3 and busy.stderr.count("\n") == 1, busy.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in busy.stderr and "--port" in busy.stderr


QUEUE_SHOWN = """(want) => { const q = document.getElementById('queues');
    const cards = [...document.querySelectorAll('section.card')];
    return !q.hidden && q.textContent.includes(want.queue) && cards.length === want.instances
      && cards.every(c => want.running ? c.dataset.job : !c.dataset.job)
      && cards.every(c => c.innerText.includes(want.card)); }"""


def test_the_dashboard_shows_each_queue_and_the_job_each_instance_runs(runtime_dir: Path, tmp_path: Path) -> None:
    """Issue 20: per queue its depth, running, done and rate; per instance the job it runs, then how its jobs ended."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: run .ci/install-chromium (Debian's chromium package) or set BUS_CHROMIUM")
    from playwright.sync_api import sync_playwright

    from bus import Bus

    hold = tmp_path / "hold"
    config = tmp_path / "pool.toml"
    config.write_text(f'[engines.w]\ncommand = {json.dumps([sys.executable, str(Path(__file__).parent.parent / "engines" / "worker.py")])}\ninstances = 3\nqueue = "q"\n')
    launcher = bus("up", "-q", str(config), stdout=open(tmp_path / "up.out", "w"))
    web, url = start_web()
    try:
        with Bus(timeout=60) as client:
            ids = client.submit_many("q", [{"n": n, "block": str(hold)} for n in range(8)])
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    page.goto(url)
                    page.wait_for_function(QUEUE_SHOWN, arg={"queue": "q: 5 queued · 3 running · 0 done", "instances": 3, "running": True, "card": "(q, attempt 1)"}, timeout=WAIT_MS)
                    running = sorted(page.evaluate("() => [...document.querySelectorAll('section.card')].map(c => c.dataset.job)"))
                    assert running == sorted(j["id"] for j in client.jobs("q", state="running"))
                    hold.touch()
                    for job_id in ids:
                        client.result(job_id, timeout=60)
                    page.wait_for_function(QUEUE_SHOWN, arg={"queue": "q: 0 queued · 0 running · 8 done · 0 failed · 0 dead", "instances": 3, "running": False, "card": "jobs: "}, timeout=WAIT_MS)
                    counts = page.evaluate("() => [...document.querySelectorAll('section.card .job')].map(n => n.textContent)")
                    assert sum(int(text.split("jobs: ")[1].split()[0]) for text in counts) == 8, counts
                    assert errors == []
                finally:
                    browser.close()
        assert bus_result("down").returncode == 0
        assert launcher.wait(30) == 0
    finally:
        assert stop_web(web) == 0
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
