"""Seed 003 rebuilt (examples/library.toml): three pools on three queues take a folder's
files from the producer, and `bus down` leaves no process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bus import Bus
from helpers import EXAMPLES, processes_using, running


def test_the_library_pools_scan_tag_and_calibrate_a_folder(runtime_dir: Path, tmp_path: Path, monkeypatch) -> None:
    music = tmp_path / "music"
    (music / "sub").mkdir(parents=True)
    for n in range(6):
        (music / f"Artist {n} - Song {n}.flac").write_bytes(bytes([n]) * (50_000 + n))
    (music / "sub" / "notes.txt").write_text("not audio\n")
    monkeypatch.setenv("DEMO_PACE", "0")
    with running("up", "--plain", str(EXAMPLES / "library.toml"), stdout=open(tmp_path / "up.out", "w")):
        produced = subprocess.run([sys.executable, str(EXAMPLES / "library_producer.py"), str(music)], capture_output=True, text=True, timeout=120)
        assert produced.returncode == 0, produced.stderr
        assert "scanned 7 of 7 files (300,025 bytes), 6 audio" in produced.stdout, produced.stdout
        assert "tagged 6, calibrated 6" in produced.stdout
        with Bus(timeout=30) as client:
            queues = client.status()["queues"]
            assert {q: (c["done"], c["dead"]) for q, c in queues.items()} == {"scan": (7, 0), "tag": (6, 0), "calibrate": (6, 0)}
            instances = {e["engine"]: e["instances"] for e in client.status()["engines"]}
            assert instances == {"tagger": 2, "scanner": 10, "calibrator": 5}
            tagged = {j["result"]["artist"] for j in client.jobs("tag", state="done")}
            assert tagged == {f"Artist {n}" for n in range(6)}
    assert processes_using(runtime_dir) == []
