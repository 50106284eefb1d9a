"""Does `bus web` stay smooth with 20 engines at 10 events/s each?

    .venv/bin/python -m bench.web [--engines 20] [--rate 10] [--seconds 30]

Needs the web extra and a Chromium (.ci/install-chromium; BUS_CHROMIUM). Runs
`bus up -q` with ENGINES demo-like engines (progress RATE/s; a log line every
5th event; a real PNG screenshot every 20th (drawn once at start); a finding every 10th), `bus web`,
and the page in headless Chromium, and prints:
- in the page: frames drawn and the longest gap between them, main-thread
  tasks over 50 ms, feed messages per second, and how stale each card is (now
  minus the engine time of the newest event it shows), sampled 4 times a second;
- the feed's bytes per second (a second reader of /feed);
- the bridge's CPU (percent of one core) and RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.run import memory, pct

ROOT = Path(__file__).resolve().parent.parent
ENGINE = """
import os, sys, time
sys.path.insert(0, {examples!r})
from bus.engine import Engine
from pngdraw import page_screenshot
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
n = int(rate * seconds)
pictures = [page_screenshot("bench.example", f"/p{{k}}", k) for k in range(4)]  # drawn once: the engines' CPU is not what is measured
with Engine() as eng:
    with eng.phase("work"):
        start = time.monotonic()
        for i in range(1, n + 1):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            if i % 20 == 0:
                eng.screenshot(pictures[i // 20 % 4], name=f"p{{i}}.png")
            elif i % 10 == 0:
                eng.finding(item=i, check="bench")
            elif i % 5 == 0:
                eng.log(f"item {{i}} of {{n}}")
            else:
                eng.progress(done=i, total=n, detail=f"item {{i}}")
    eng.result(events=n)
"""
PROBE = """() => {
  window.__frames = []; window.__long = []; window.__stale = [];
  const tick = (t) => { window.__frames.push(t); requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); }).observe({entryTypes: ["longtask"]});
  setInterval(() => { const now = Date.now() / 1000;
    for (const c of bus.cards.values()) if (c.updated && c.state === "running" && c.progress && c.progress.pct < 100) window.__stale.push(now - c.updated); }, 250);
}"""
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("BUS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    work = Path(tempfile.mkdtemp(prefix="bw"))
    env = {**os.environ, "BUS_RUNTIME_DIR": str(work), "BUS_STATE_DIR": str(work / "state"), "BUS_SESSION": "webbench"}
    (work / "dash_engine.py").write_text(ENGINE.format(examples=str(ROOT / "examples")))
    config = work / "bus.toml"
    config.write_text("".join(f'[engines.e{i:02d}]\ncommand = ["python", {json.dumps(str(work / "dash_engine.py"))}, "{args.rate}", "{args.seconds}"]\n' for i in range(args.engines)))
    web = subprocess.Popen([sys.executable, "-m", "bus", "web", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = web.stdout.readline().split()[3]  # type: ignore[union-attr]
    feed_bytes = [0]

    def read_feed() -> None:
        with urllib.request.urlopen(url + "feed", timeout=args.seconds + 60) as feed:
            while chunk := feed.read1(65536):
                feed_bytes[0] += len(chunk)

    up = None
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            page.evaluate(PROBE)
            threading.Thread(target=read_feed, daemon=True).start()
            up = subprocess.Popen([sys.executable, "-m", "bus", "up", "-q", str(config)], env=env, cwd=ROOT)
            page.wait_for_function(f"() => [...bus.cards.values()].filter(c => c.state === 'running').length === {args.engines}", timeout=60_000)
            updates0, bytes0, cpu0, t0 = page.evaluate("bus.updates"), feed_bytes[0], cpu_seconds(web.pid), time.monotonic()
            page.evaluate("() => { window.__frames = []; window.__long = []; window.__stale = []; }")
            page.wait_for_timeout(args.seconds * 1000 * 0.8)
            elapsed = time.monotonic() - t0
            frames, long_tasks, stale = page.evaluate("[window.__frames, window.__long, window.__stale]")
            updates = page.evaluate("bus.updates") - updates0
            cpu = (cpu_seconds(web.pid) - cpu0) / elapsed * 100
            feed_rate = (feed_bytes[0] - bytes0) / elapsed / 1024
            rss = memory(web.pid)[0] / 2**20
            gaps = [b - a for a, b in zip(frames, frames[1:])]
            page.screenshot(path=str(work / "web-bench.png"))
            browser.close()
        up.wait(args.seconds + 60)
    finally:
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(30)
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(15)
        except subprocess.TimeoutExpired:
            web.kill()
            print("bus web did not stop within 15 s of SIGTERM", file=sys.stderr)
    print(f"bus web, {args.engines} engines x {args.rate:g} events/s ({args.engines * args.rate:g}/s), measured over {elapsed:.1f} s:")
    print(f"  page: {len(frames) / elapsed:.0f} frames/s, longest gap {max(gaps, default=0):.0f} ms, frames over 50 ms: {sum(g > 50 for g in gaps)}; "
          f"tasks over 50 ms: {len(long_tasks)} (longest {max(long_tasks, default=0):.0f} ms)")
    print(f"  feed: {updates / elapsed:.1f} messages/s to the page, {feed_rate:.0f} KiB/s")
    print(f"  staleness of a running card (now - its newest event): p50 {pct(stale, 50) * 1000:.0f} ms, p99 {pct(stale, 99) * 1000:.0f} ms, max {max(stale, default=0) * 1000:.0f} ms")
    print(f"  bridge: {cpu:.0f}% of one core, {rss:.0f} MiB RSS")
    print(f"  a picture of the page: {work / 'web-bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
