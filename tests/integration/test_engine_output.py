"""What a child prints cannot hurt the supervisor: a 100 MB line with no newline,
invalid UTF-8, binary junk, terminal escapes, and a child writing faster than
anyone reads. Memory stays bounded and what follows still arrives."""

from __future__ import annotations

import sys
from pathlib import Path

import zmq
from helpers import ENGINES, bus, bus_result, supervisor_memory, write_config

from bus import Subscriber
from bus.control_client import ControlClient
from bus.runtime import resolve

sys.path.insert(0, str(ENGINES))
from noisy import BAD, FIREHOSE_LINE, MB  # noqa: E402

LONG_MB, BAD_LINES, FIREHOSE_MB = 100, 3000, 200
MAX_LINE = 64 * 1024  # the supervisor's default max_line


def test_a_100mb_line_junk_and_a_firehose_leave_memory_bounded(runtime_dir: Path, tmp_path: Path, ctx: zmq.Context) -> None:
    config = write_config(
        tmp_path,
        {
            "long": ["python", "noisy.py", "--long-mb", str(LONG_MB), "--bad-lines", str(BAD_LINES)],
            "firehose": ["python", "noisy.py", "--firehose-mb", str(FIREHOSE_MB)],
        },
        history_mb=32,
    )
    launcher = bus("up", "--plain", "--keep", str(config), stdout=open(tmp_path / "launcher.out", "w"))
    try:
        with Subscriber(engines=["long"], timeout=120, connect_timeout=60) as sub:
            events = []
            while not (events and events[-1].kind == "exit"):
                event = sub.recv(timeout=120)
                assert event is not None
                if event.engine == "long":
                    events.append(event)
        with Subscriber(engines=["firehose"], kinds=["exit"], timeout=180, connect_timeout=60) as sub:
            assert sub.recv(timeout=180).kind == "exit"
        client = ControlClient(ctx, resolve(None), timeout=10)
        status, _ = client.request("status")
        client.close()
        rss, peak = supervisor_memory(status["pid"])
    finally:
        assert bus_result("down", timeout=60).returncode == 0
        launcher.wait(30)

    logs = [e.fields() for e in events if e.kind == "log" and e.fields()["stream"] == "stdout"]
    cut = logs[0]
    assert cut["message"].startswith("x" * 1000) and cut["message"].endswith(f"[... {LONG_MB * MB - MAX_LINE} more bytes cut]")
    assert len(cut["message"]) < 64 * 1024
    junk = [f["message"] for f in logs[1 : 1 + BAD_LINES]]
    expected = [BAD[i % len(BAD)].decode("utf-8", errors="replace") for i in range(BAD_LINES)]
    assert junk == expected  # every line, in order; invalid UTF-8 as U+FFFD, the rest as sent
    assert len(logs) == 1 + BAD_LINES
    assert [e.fields()["message"] for e in events if e.kind == "log" and e.fields()["stream"] == "engine"] == ["after the noise"]
    result = next(e for e in events if e.kind == "result")
    assert result.fields()["summary"] == {"long_mb": LONG_MB, "bad_lines": BAD_LINES, "firehose_mb": 0}
    firehose = next(e for e in status["engines"] if e["name"] == "firehose")
    assert firehose["lines"] == FIREHOSE_MB * MB // FIREHOSE_LINE  # every line of 200 MB, none lost
    print(f"\nsupervisor RSS after 100 MB line + {FIREHOSE_MB} MB firehose: {rss / MB:.0f} MiB now, {peak / MB:.0f} MiB peak")
    assert peak < 200 * MB
