"""Seed 003's producer on work queues: every file of a folder to `scan`, then the
audio files to `tag` and `calibrate`; prints what each queue made of them.

    python examples/library_producer.py FOLDER [--address ADDRESS]

Against `bus up examples/library.toml`. The ids are the files' paths per queue,
so running it again after a crash queues nothing twice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bus import Bus, JobDead


def results(bus: Bus, ids: list[str]) -> tuple[list[dict], list[str]]:
    done, dead = [], []
    for job_id in ids:
        try:
            done.append(bus.result(job_id, timeout=600))
        except JobDead as exc:
            dead.append(f"{job_id}: {exc}")
    return done, dead


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--address", default=None, help="the supervisor (a session name, or tcp://HOST:PORT); default: this session")
    args = parser.parse_args()
    if not args.folder.is_dir():
        print(f"library_producer: {args.folder} is not a folder: give the music library's folder", file=sys.stderr)
        return 2
    files = sorted(str(p.resolve()) for p in args.folder.rglob("*") if p.is_file())
    with Bus(args.address, timeout=30) as bus:
        scanned, dead = results(bus, bus.submit_many("scan", [{"path": f} for f in files], ids=[f"scan:{f}" for f in files], wait=True))
        audio = [r["path"] for r in scanned if r.get("audio")]
        tag_ids = bus.submit_many("tag", [{"path": f} for f in audio], ids=[f"tag:{f}" for f in audio], wait=True)
        cal_ids = bus.submit_many("calibrate", [{"path": f} for f in audio], ids=[f"calibrate:{f}" for f in audio], wait=True)
        tagged, dead_tag = results(bus, tag_ids)
        calibrated, dead_cal = results(bus, cal_ids)
    print(f"scanned {len(scanned)} of {len(files)} files ({sum(r['size'] for r in scanned):,} bytes), {len(audio)} audio")
    print(f"tagged {len(tagged)}, calibrated {len(calibrated)}")
    for line in dead + dead_tag + dead_cal:
        print(f"dead: {line}")
    return 1 if dead or dead_tag or dead_cal else 0


if __name__ == "__main__":
    sys.exit(main())
