"""Demo engine: a media-library tagger with worker threads, using the engine SDK.

Several threads tag files at once and all report through one Engine (its
methods are thread-safe); Python `logging` goes to the bus through LogHandler.
Each album gets a cover thumbnail (a real PNG) and duplicates become findings.

    python tagger_engine.py --files 40 --workers 3
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bus.engine import Engine, LogHandler
from pngdraw import cover_art

PACE = float(os.environ.get("DEMO_PACE", "1"))
ALBUMS = ["NIGHT DRIVE", "BLUE HOURS", "PAPER MOON"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()

    with Engine() as eng:
        log = logging.getLogger("tagger")
        log.setLevel(logging.INFO)
        log.addHandler(LogHandler(eng))

        with eng.phase("scan", detail="library /music"):
            files = [f"{ALBUMS[i % len(ALBUMS)]}/track{i:02d}.flac" for i in range(args.files)]
            eng.progress(done=len(files), total=len(files), detail=f"{len(files)} files")
            log.info("scanned %d files in %d albums", len(files), len(ALBUMS))

        done = 0
        lock = threading.Lock()

        def tag(path: str) -> None:
            nonlocal done
            time.sleep(0.08 * PACE)
            if path.endswith("track07.flac"):
                eng.finding(kind="duplicate", path=path, same_as=path.replace("07", "17"))
            with lock:
                done += 1
                count = done
            eng.progress(done=count, total=len(files), detail=path)

        with eng.phase("tag"):
            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(tag, files))
            log.info("tagged %d files with %d threads", len(files), args.workers)

        with eng.phase("covers"):
            for i, album in enumerate(ALBUMS, 1):
                eng.screenshot(cover_art(album), name=f"{album.lower().replace(' ', '-')}.png")
                eng.progress(done=i, total=len(ALBUMS), detail=album)
        eng.result(files=len(files), albums=len(ALBUMS), threads=args.workers)


if __name__ == "__main__":
    main()
