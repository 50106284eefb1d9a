"""The benchmark still runs (a smoke run: a twentieth of the events). Its figures
are measured, never asserted here; what is asserted is what must hold at any
speed: nothing lost, every engine stopped without SIGKILL, every figure there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT


def test_the_benchmark_runs_and_loses_nothing(runtime_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(out.read_text())
    figures = [k for k in results if not k.startswith("_")]
    assert [f.split("_", 1)[0] for f in figures] == ["1", "9", "5", "2", "3", "4", "6", "7", "8", "10", "11", "12", "13", "13"]
    assert all(v > 0 for v in results["1_small_events_per_s"].values())
    many = results["4_fifty_engines_five_subscribers"]
    assert many["lost"] == 0 and many["every_subscriber_complete"] is True
    memory = results["6_supervisor_rss_after_1M_events_one_stalled_subscriber"]
    assert memory["accepted"] >= memory["events"]
    stop = results["7_stop_100_engines_s"]
    assert stop["exited"] == stop["without SIGKILL"] == stop["engines"]  # an engine stopped before its SDK set its handler dies of SIGTERM: still graceful
    chatty = results["8_chatty_child_100k_lines"]
    assert chatty["journaled"] == chatty["shown"] == chatty["bus tail printed"] == chatty["lines"], "no line lost: journal, display, tail"
    assert results["10_bus_run_true_s"]["its exit and sup.stop in the journal"] is True
    assert all(v > 0 for v in results["9_supervisor_cpu_us_per_event"].values())
    scale = results["11_start_trivial_engines"]
    assert all(v > 0 for k, v in scale.items() if k.endswith(" s"))  # (per-engine costs of a quick run are noise around 0)
    spawn = results["12_spawn_to_first_event"]
    assert spawn["runs"] == 5 and all(v > 0 for k, v in spawn.items() if k.endswith(" ms"))
    for figure in figures:
        assert figure in run.stdout  # the table names every figure
    jobs = results["13_work_queue_jobs_per_s"]
    assert all(v > 0 for k, v in jobs.items() if "jobs/s" in k)  # every pool, both sides, finished its jobs
    latency = results["13_work_queue_submit_to_start_ms"]
    assert 0 < latency["ours p50"] <= latency["ours p99"]
