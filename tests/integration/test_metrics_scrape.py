"""/metrics end to end: a real supervisor running real engines (a scripted engine and a
pool blocked on its jobs), scraped over HTTP during the run through `bus up --metrics`
and through `bus web`, and read with prometheus_client's own parser."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families

from bus import Bus
from helpers import ENGINES, bus_result, free_ports, running, scripted, start_web, stop_web, write_config

sys.path.insert(0, str(ENGINES))
from scripted import kind_of, script  # noqa: E402

EVENTS, SEED = 40, 7
JOBS, WORKERS = 5, 2
TEXT_FORMAT = "text/plain; version=0.0.4"


def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, {
        "talker": scripted("--events", str(EVENTS), "--seed", str(SEED), "--hold"),
        "w": {"command": [sys.executable, str(ENGINES / "worker.py")], "instances": WORKERS, "queue": "q"},
    }, stop_timeout=5)


EXACT = ("hello", "phase.start", "log", "finding", "phase.done", "result")  # kinds an SDK never drops by default


def sent_by_kind() -> Counter[str]:
    """What the engines' SDKs send before the test's checks, by kind (heartbeats aside): the
    talker's script and its hello, and each worker's hello."""
    return Counter([kind_of(method) for method, _ in script(SEED, EVENTS)] + ["hello"] * (1 + WORKERS))


class Scrape:
    """One scrape: its content type and its samples, {(name, frozenset(labels)): value}."""

    def __init__(self, url: str) -> None:
        with urllib.request.urlopen(url, timeout=30) as response:
            self.status, self.content_type = response.status, response.headers["Content-Type"]
            text = response.read().decode()
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[sample.name, frozenset(sample.labels.items())] = sample.value

    def get(self, metric: str, /, **labels: str) -> float | None:
        return self.samples.get((metric, frozenset(labels.items())))

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (n, labels) in self.samples if n == name]


def scrape_until(url: str, holds: Callable[[Scrape], bool], what: str, timeout: float = 60) -> Scrape:
    """Scrape until `holds(scrape)`; fails after `timeout` with the last scrape's samples."""
    deadline = time.monotonic() + timeout
    while True:
        last = Scrape(url)
        if holds(last):
            return last
        assert time.monotonic() < deadline, f"the metrics never showed {what} within {timeout}s: {sorted(last.samples.items())[:200]}"
        time.sleep(0.1)  # (a poll's pace, not a synchronisation: the deadline bounds it)


def busy(scrape: Scrape) -> bool:
    """The talker's last event (its result: the rest came before it) is in and it holds; both workers hold a job; the rest waits."""
    return (scrape.get("bus_up") == 1
            and scrape.get("bus_engine_state", engine="talker", name="talker", state="running") == 1
            and scrape.get("bus_events_received_total", kind="result") == 1
            and scrape.get("bus_events_received_total", kind="hello") == 1 + WORKERS
            and scrape.get("bus_queue_jobs", queue="q", state="running") == WORKERS)


def check_the_run(url: str, gate: Path, run: str) -> Scrape:
    """Submit JOBS jobs that block on `gate` and check what the metrics say while the pool holds them."""
    with Bus(timeout=30) as client:
        ids = client.submit_many("q", [{"n": n, "block": str(gate)} for n in range(JOBS)])
    assert len(ids) == JOBS
    got = scrape_until(url, busy, "the talker done sending and both workers busy")
    assert got.status == 200 and got.content_type.startswith(TEXT_FORMAT), got.content_type
    assert got.labels_of("bus_info") == [{"run": run, "version": got.labels_of("bus_info")[0]["version"]}]
    # What the engines sent arrived and went out, kind by kind (progress may be dropped under pressure; the others never are).
    sent = sent_by_kind()
    for kind, count in sent.items():
        received = got.get("bus_events_received_total", kind=kind)
        published = got.get("bus_events_published_total", kind=kind)
        assert received is not None and published is not None, kind
        assert published >= received, (kind, received, published)
        assert received == count if kind in EXACT else 0 < received <= count, (kind, received, count)
    assert (got.get("bus_engine_events_total", engine="talker", name="talker") or 0) >= sum(sent[k] for k in EXACT) - WORKERS  # (its own: one hello)
    assert got.get("bus_events_published_total", kind="sup.start") == 1
    assert got.get("bus_events_published_total", kind="job.queued") == JOBS
    assert got.get("bus_events_published_total", kind="job.started") == WORKERS
    assert got.get("bus_events_rejected_total", reason="bad-msgpack") == 0
    # Every instance is running (and only that), none restarted or lost anything.
    for name, engine in (("talker", "talker"), ("w.1", "w"), ("w.2", "w")):
        states = {labels["state"]: got.get("bus_engine_state", **labels) for labels in got.labels_of("bus_engine_state") if labels["name"] == name}
        assert states and {s for s, v in states.items() if v == 1} == {"running"} and sum(states.values()) == 1, (name, states)
        assert got.get("bus_engine_restarts_total", engine=engine, name=name) == 0
        assert got.get("bus_engine_lost_total", engine=engine, name=name) == 0
    # The queue: two jobs held by the blocked pool, the rest queued, none done.
    depth = {state: got.get("bus_queue_jobs", queue="q", state=state) for state in ("queued", "running", "done", "failed", "dead")}
    assert depth == {"queued": JOBS - WORKERS, "running": WORKERS, "done": 0, "failed": 0, "dead": 0}, depth
    # History and journal hold what was published.
    published = sum(v for (name, _), v in got.samples.items() if name == "bus_events_published_total")
    assert got.get("bus_history_events") == published
    assert got.get("bus_journal_state", state="ok") == 1 and got.get("bus_journal_state", state="failed") == 0
    assert (got.get("bus_journal_bytes") or 0) > 0
    assert 0 <= (got.get("bus_journal_written_events_total") or -1) <= published
    lag = got.get("bus_relay_lag_seconds")
    assert lag is not None and lag >= 0
    return got


def run_of_session() -> str:
    with Bus(timeout=30) as client:
        return str(client.status()["run"])


def test_bus_up_serves_metrics_of_its_run_while_it_runs(runtime_dir: Path, tmp_path: Path) -> None:
    port = free_ports(1)
    gate = tmp_path / "gate"
    url = f"http://127.0.0.1:{port}/metrics"
    with running("up", "-q", "--keep", "--metrics", f"127.0.0.1:{port}", str(config(tmp_path))):
        check_the_run(url, gate, run_of_session())
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}), timeout=30) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text"), response.headers["Content-Type"]
            assert response.read().decode().rstrip().endswith("# EOF")
        gate.touch()  # (the jobs end, so the pool stops at once)
    with socket.socket() as probe:  # the launcher has exited: nothing listens on its metrics port (scrapes may leave it in TIME_WAIT)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


def test_bus_web_serves_metrics_and_says_bus_up_0_without_a_supervisor(runtime_dir: Path, tmp_path: Path) -> None:
    web, base = start_web()
    url = base + "metrics"
    try:
        before = Scrape(url)  # no supervisor yet: the scrape answers all the same
        assert before.status == 200 and before.content_type.startswith(TEXT_FORMAT)
        assert before.samples == {("bus_up", frozenset()): 0}
        gate = tmp_path / "gate"
        with running("up", "-q", "--keep", str(config(tmp_path)), stdout=subprocess.DEVNULL):
            got = check_the_run(url, gate, run_of_session())
            assert got.get("bus_subscribers", transport="local") is not None
            scrape_until(url, lambda s: (s.get("bus_subscribers", transport="local") or 0) >= 1, "bus web's own subscription")
            gate.touch()
        scrape_until(url, lambda s: s.get("bus_up") == 0, "bus_up 0 once the supervisor is gone")
    finally:
        assert stop_web(web) == 0


def test_bus_up_metrics_says_in_one_line_what_it_cannot_do(runtime_dir: Path, tmp_path: Path) -> None:
    path = config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = bus_result("up", "-q", "--metrics", f"127.0.0.1:{port}", str(path), timeout=60)
    assert said.returncode == 3, said
    assert said.stderr.startswith(f"bus up: cannot serve metrics on 127.0.0.1:{port}: ") and said.stderr.count("\n") == 1, said.stderr
    bad = bus_result("up", "-q", "--metrics", "nowhere", str(path), timeout=60)
    assert bad.returncode == 2 and "is not HOST:PORT" in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    # Without prometheus-client (hidden from the import system here): the extra to install, nothing started.
    blocked = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['prometheus_client'] = None; sys.argv[0] = 'bus'; from bus.cli import main; main()",
         "up", "-q", "--metrics", "127.0.0.1:0", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert blocked.returncode == 2, blocked
    assert "install bus-orchestrator[metrics]" in blocked.stderr and blocked.stderr.count("\n") == 1, blocked.stderr
