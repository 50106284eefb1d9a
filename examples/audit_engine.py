"""Demo engine: audits a (simulated) web site with the engine SDK.

Walks three phases (scout, scan, report), reports progress per page, renders
a real PNG screenshot of every page it "visits", emits findings, and ends with
a result. Deterministic for a given --site and --pages (the screenshots too),
so tests can check what arrived against what was sent.

    python audit_engine.py --site shop.example --pages 8
    bus run -- python audit_engine.py --site shop.example
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

from bus.engine import Engine
from pngdraw import page_screenshot

PACE = float(os.environ.get("DEMO_PACE", "1"))  # 0 runs flat out; tests use a small pace
HOLD = os.environ.get("DEMO_HOLD")  # a file: halfway through the scan, wait until it exists (tests freeze a run with it)
CHECKS = ["missing alt text", "contrast below 4.5:1", "form field without label", "link text 'click here'"]


def pages_of(site: str, count: int) -> list[str]:
    names = ["/", "/about", "/pricing", "/blog", "/contact", "/checkout", "/login", "/help", "/careers", "/terms"]
    return [names[i % len(names)] + ("" if i < len(names) else f"-{i}") for i in range(count)]


def issues_on(site: str, path: str) -> int:
    return hashlib.sha256(f"{site}{path}".encode()).digest()[0] % 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--site", default="shop.example")
    parser.add_argument("--pages", type=int, default=8)
    args = parser.parse_args()
    pages = pages_of(args.site, args.pages)

    with Engine() as eng:
        with eng.phase("scout", detail=f"https://{args.site}/"):
            for i in range(1, 4):
                time.sleep(0.15 * PACE)
                eng.progress(done=i, total=3, detail=f"sitemap part {i}")
            eng.log(f"found {len(pages)} pages on {args.site}")

        findings = 0
        with eng.phase("scan"):
            for done, path in enumerate(pages, 1):
                if HOLD and done == len(pages) // 2 + 1:
                    eng.log("holding until DEMO_HOLD exists")
                    while not os.path.exists(HOLD):
                        time.sleep(0.05)
                time.sleep(0.3 * PACE)
                issues = issues_on(args.site, path)
                eng.screenshot(page_screenshot(args.site, path, issues), name=f"{path.strip('/') or 'home'}.png")
                for n in range(issues):
                    findings += 1
                    eng.finding(page=path, check=CHECKS[n], severity="high" if n == 0 else "low")
                if issues >= 3:
                    eng.log(f"{path}: {issues} issues, worth a look", level="warning")
                eng.progress(done=done, total=len(pages), detail=path)

        with eng.phase("report"):
            time.sleep(0.2 * PACE)
            eng.progress(pct=100, detail="report written")
        eng.result(site=args.site, pages=len(pages), findings=findings)
        print(f"audit of {args.site} finished: {findings} findings")  # plain stdout, captured as a log line


if __name__ == "__main__":
    main()
