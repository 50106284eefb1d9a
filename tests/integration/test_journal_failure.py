"""A journal that cannot be written is never silent, and one that is locked waits.

Before: a full disk or a file-size limit stopped journalling for the rest of the
run with no word anywhere, `bus up` exited 0, `bus runs` said "supervisor
killed?" and `bus tail --run last --no-follow` exited 0 with 1% of the run; a
lock held by another process for 8 s did the same."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import ROOT, Collector, bus_result, scripted, write_config

STOPPED = "stopped after event "


def up_limited(config: Path, tmp_path: Path, limit_blocks: int | None, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`bus up` with a file-size limit (in the shell's 512-byte blocks) on the supervisor."""
    limit = f"ulimit -f {limit_blocks} && " if limit_blocks else ""
    return subprocess.Popen(
        ["sh", "-c", f"{limit}exec {sys.executable} -m bus up --plain {config}"],
        cwd=ROOT, text=True, stdout=open(tmp_path / "up.out", "w"), stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )


def check_told_everywhere(launcher: subprocess.Popen[str], collector: Collector, cause: str, env: dict[str, str] | None = None) -> None:
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1, err  # the engines did fine; the record on disk did not
    last = err.strip().splitlines()[-1]
    assert last.startswith("bus: the journal ") and STOPPED in last and cause in last, err
    after = int(last.split(STOPPED)[1].split()[0])
    events = collector.finish(60)  # the run itself reached its subscriber whole (from memory)
    notes = [e.fields()["message"] for e in events if e.kind == "log" and e.fields()["stream"] == "bus"]  # type: ignore[union-attr]
    assert any(STOPPED + str(after) in n and cause in n and "kept in memory only" in n for n in notes), notes
    assert events[-1].kind == "sup.stop" and events[-1].fields()["code"] == 1  # type: ignore[union-attr]
    assert 0 < after < events[-1].gseq  # type: ignore[operator]

    env = {**os.environ, **(env or {})}
    runs = bus_result("runs", env=env)
    assert runs.returncode == 0
    line = runs.stdout.strip().splitlines()[-1]
    assert "exit code 1" in line and f"the journal stopped after event {after}: " in line and cause in line, line
    replay = bus_result("tail", "--run", "last", "--no-follow", "--json", env=env)
    assert replay.returncode == 1
    said = replay.stderr.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"bus tail: the journal stopped after event {after} of this run ({cause}"), said
    assert said[0].endswith("): the rest of the run was never written to disk")
    gseqs = [json.loads(row)["gseq"] for row in replay.stdout.splitlines()]
    assert gseqs == list(range(1, after + 1))


def test_a_file_size_limit_stops_the_journal_and_says_so_everywhere(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"shots": {"command": scripted("--events", "2000", "--shots", "60", "--seed", "4"), "droppable": []}})
    collector = Collector()
    collector.start()
    launcher = up_limited(config, tmp_path, 4096)  # 2 MiB; the run publishes about 6 MiB
    check_told_everywhere(launcher, collector, "a file-size limit of 2048 KiB (ulimit -f)")


def test_a_full_disk_stops_the_journal_and_says_so_everywhere(runtime_dir: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill ({mounted.stderr.strip() or 'mount failed'})")
    try:
        env = {"BUS_STATE_DIR": str(small)}
        config = write_config(tmp_path, {"shots": {"command": scripted("--events", "2000", "--shots", "60", "--seed", "5"), "droppable": []}})
        collector = Collector()
        collector.start()
        launcher = up_limited(config, tmp_path, None, env)
        check_told_everywhere(launcher, collector, "the disk is full", env)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_lock_held_by_another_process_is_waited_out_and_nothing_is_lost(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"slow": {"command": scripted("--events", "3000", "--pace", "6", "--seed", "6"), "droppable": []}})
    journal = runtime_dir / "state" / "default" / "journal.sqlite"
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        conn = sqlite3.connect(journal, timeout=30, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")  # as another program writing to it would
        locked.set()
        release.wait(30)
        conn.execute("COMMIT")
        conn.close()

    def first_progress(event: object) -> bool:
        return getattr(event, "kind", "") == "progress"

    collector = Collector(until=first_progress)  # (its `reached`: the run is under way)
    collector.start()
    launcher = up_limited(config, tmp_path, None)
    assert collector.reached.wait(60)
    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert locked.wait(30)
    threading.Timer(4.0, release.set).start()  # a 4 s hold, in the middle of the run
    _, err = launcher.communicate(timeout=120)
    holder.join(30)
    assert launcher.returncode == 0, err
    events = collector.finish(60)
    notes = [e.fields()["message"] for e in events if e.kind == "log" and e.fields()["stream"] == "bus"]  # type: ignore[union-attr]
    waited = [n for n in notes if "the journal waited" in n]
    assert len(waited) == 1 and "locked by another process" in waited[0] and "nothing was lost" in waited[0], notes
    assert float(waited[0].split("waited ")[1].split("s")[0]) >= 3.0
    replay = bus_result("tail", "--run", "last", "--no-follow", "--json")
    assert replay.returncode == 0, replay.stderr
    assert [json.loads(row)["gseq"] for row in replay.stdout.splitlines()] == [e.gseq for e in events]
