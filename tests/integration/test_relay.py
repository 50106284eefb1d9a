"""A supervisor (the real `bus up`), three scripted engines and two subscribers:
each subscriber gets every event, in per-engine order, screenshots byte-identical."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from helpers import ENGINES, Collector, bus, bus_result, results_from, scripted, write_config

from bus.protocol import Event

sys.path.insert(0, str(ENGINES))
from scripted import kind_of, script  # noqa: E402

SPECS = {"alpha": (1, 300, 6), "beta": (2, 200, 4), "gamma": (3, 120, 2)}  # seed, events, screenshots


def check_engine_stream(name: str, events: list[Event]) -> None:
    seed, count, shots = SPECS[name]
    steps = script(seed, count, shots)
    pushed = [e for e in events if e.engine == name and e.seq is not None]
    assert [e.seq for e in pushed] == list(range(1, len(steps) + 3)), f"{name}: engine sequence numbers"
    assert pushed[0].kind == "hello" and pushed[-1].kind == "bye"
    for (method, kwargs), event in zip(steps, pushed[1:-1]):
        assert event.kind == kind_of(method), f"{name} seq {event.seq}"
        fields = event.fields()
        for key, value in kwargs.items():
            assert fields[key] == value, f"{name} seq {event.seq} field {key}"
    bye = pushed[-1].fields()
    assert bye == {"sent": len(steps) + 1, "dropped": 0, "dropped_kinds": {}}
    exits = [e for e in events if e.engine == name and e.kind == "exit"]
    assert len(exits) == 1 and events.index(exits[0]) > events.index(pushed[-1])
    assert exits[0].fields()["code"] == 143  # SIGTERM from `bus down`, turned into SystemExit by the SDK


def test_every_subscriber_gets_every_event_in_order(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {n: scripted("--seed", str(s), "--events", str(c), "--shots", str(k), "--hold") for n, (s, c, k) in SPECS.items()})
    collectors = [Collector(results_from(set(SPECS))), Collector()]
    for collector in collectors:
        collector.start()
    out_path = tmp_path / "launcher.jsonl"
    with open(out_path, "w") as out_file:
        launcher = bus("up", "--json", str(config), stdout=out_file)
        try:
            assert collectors[0].reached.wait(60), "the engines did not all report a result"
            down = bus_result("down", timeout=60)
            assert down.returncode == 0, down.stderr
            _, err = launcher.communicate(timeout=60)
        finally:
            if launcher.poll() is None:
                launcher.terminate()
                launcher.communicate(timeout=30)
    out = out_path.read_text()
    assert launcher.returncode == 0, err
    first, second = (c.finish() for c in collectors)
    gseqs = [e.gseq for e in first]
    assert gseqs == list(range(1, len(first) + 1)), "global sequence numbers are contiguous"
    assert [(e.gseq, e.kind, e.engine, e.seq) for e in second] == [(e.gseq, e.kind, e.engine, e.seq) for e in first]
    assert first[-1].kind == "sup.stop" and first[-1].fields()["code"] == 0
    for name in SPECS:
        check_engine_stream(name, first)  # type: ignore[arg-type]
        check_engine_stream(name, second)  # type: ignore[arg-type]

    shots = [(e.gseq, bytes(e.fields()["data"])) for e in first if e.kind == "screenshot"]
    assert len(shots) == sum(k for _, _, k in SPECS.values())
    assert shots == [(e.gseq, bytes(e.fields()["data"])) for e in second if e.kind == "screenshot"]

    # The launcher's own --json view saw the same stream, screenshots as sha256.
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(d["gseq"], d["kind"], d["engine"]) for d in lines] == [(e.gseq, e.kind, e.engine) for e in first]
    import hashlib

    by_gseq = {d["gseq"]: d for d in lines}
    for gseq, data in shots:
        assert by_gseq[gseq]["sha256"] == hashlib.sha256(data).hexdigest()
        assert by_gseq[gseq]["size"] == len(data)


def test_engines_stream_from_several_threads_without_losing_order(runtime_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"threads": scripted("--threads", "8", "--events", "500")})
    collector = Collector()
    collector.start()
    result = bus_result("up", "--json", str(config), timeout=60)
    assert result.returncode == 0, result.stderr
    events = collector.finish()
    logs = [e for e in events if e.kind == "log" and e.fields()["stream"] == "engine"]
    assert len(logs) == 8 * 500
    pushed = [e.seq for e in events if e.engine == "threads" and e.seq is not None]
    assert pushed == list(range(1, len(pushed) + 1))
    for t in range(8):
        mine = [e.fields()["message"] for e in logs if e.fields()["message"].startswith(f"t{t} ")]
        assert mine == [f"t{t} i{i}" for i in range(500)]
