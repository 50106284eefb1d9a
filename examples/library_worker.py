"""Seed 003's workers on a work queue: one program, three kinds (scan, tag, calibrate).

Each instance takes one job at a time (`eng.jobs()`); its progress and logs
carry the job's id, so the dashboard shows what each instance is doing, and a
crash puts its job back in the queue for another instance.

    (started by examples/library.toml; payload: {"path": "..."})
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

from bus.engine import Engine

PACE = float(os.environ.get("DEMO_PACE", "1"))  # the tests run it faster
KIND = sys.argv[1] if len(sys.argv) > 1 else "scan"
AUDIO = (".flac", ".mp3", ".ogg", ".wav", ".m4a", ".opus")


def scan(eng: Engine, path: str) -> dict[str, object]:
    """Size and SHA-256 of the file, read in chunks with progress."""
    size = os.path.getsize(path)
    digest, done = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            done += len(chunk)
            eng.progress(done, size, phase="scan", detail=os.path.basename(path))
    time.sleep(0.05 * PACE)
    return {"path": path, "size": size, "sha256": digest.hexdigest(), "audio": path.lower().endswith(AUDIO)}


def tag(eng: Engine, path: str) -> dict[str, object]:
    """Artist and title guessed from 'Artist - Title.ext', as a tagger's fallback does."""
    stem = os.path.splitext(os.path.basename(path))[0]
    artist, _, title = stem.partition(" - ")
    time.sleep(0.1 * PACE)
    if not title:
        eng.log(f"no 'Artist - Title' in {stem!r}: tagged by file name only", level="warning")
    return {"path": path, "artist": artist.strip() if title else "", "title": (title or stem).strip()}


def calibrate(eng: Engine, path: str) -> dict[str, object]:
    """A loudness stand-in: the mean byte value of the file (a real one would decode the audio)."""
    with open(path, "rb") as f:
        data = f.read(1 << 22)
    time.sleep(0.1 * PACE)
    return {"path": path, "level": round(sum(data) / len(data), 2) if data else 0.0}


WORK = {"scan": scan, "tag": tag, "calibrate": calibrate}

with Engine() as eng:
    work = WORK[KIND]
    for job in eng.jobs():
        with job:  # an exception fails the job (queued again while attempts are left), and is shown
            path = job.payload["path"]
            if not os.path.isfile(path):
                job.fail(f"{path} is not a file", retry=False)  # trying again would not help: dead at once
                continue
            job.done(work(eng, path))
