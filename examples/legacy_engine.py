"""Demo engine from before the bus: no SDK, only print().

It speaks the old stdout protocol: `##PROGRESS:{json}` marker lines (a
screenshot in base64, as such programs did) mixed with plain lines. Run under
the bus, markers become real events and plain lines become log events, with
no change to the program.

    python legacy_engine.py
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

from pngdraw import page_screenshot

PACE = float(os.environ.get("DEMO_PACE", "1"))


def marker(**fields: object) -> None:
    print("##PROGRESS:" + json.dumps(fields), flush=True)


def main() -> None:
    print("legacy crawler 1.4 starting")
    marker(type="phase_start", phase="crawl")
    for pct in range(0, 101, 10):
        time.sleep(0.15 * PACE)
        marker(phase="crawl", step="fetch", pct=pct, detail=f"{pct // 10} of 10 batches")
    marker(type="phase_complete", phase="crawl")
    marker(type="finding", data={"url": "/old-page", "status": 404})
    shot = page_screenshot("legacy.example", "/old-page", 1)
    marker(type="screenshot", name="old-page.png", data=base64.b64encode(shot).decode())
    print("warning: 1 broken link", file=sys.stderr)
    marker(type="result", summary={"pages": 10, "broken": 1})
    print("legacy crawler done")


if __name__ == "__main__":
    main()
