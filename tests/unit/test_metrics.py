"""bus/metrics.py without a supervisor: a status reply as metric families, a supervisor that
does not answer (bus_up 0, the scrape still answers), and what `--metrics` accepts."""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus.errors import UsageError
from bus.metrics import ENGINE_STATES, StatusCollector, families, listen_address, registry_for, render
from bus.supervisor.lifecycle import State


def engine(name: str, state: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "engine": name.split(".", 1)[0], "state": state, "restarts": 0, "events": 0, "lost": 0, "dropped_kinds": {}, "progress": None, "last_event": None, **more}


REPLY: dict[str, Any] = {
    "run": "r1", "version": "9.9", "started": 1000.0, "stopping": None, "internal_errors": 0,
    "counters": {"received": 12, "accepted": 11, "rejected": 1, "published": 20, "lines": 3, "withheld": 0},
    "kinds": {"received": {"log": 7, "progress": 4}, "published": {"log": 10, "state": 6, "progress": 4}},
    "rejects": {"bad-msgpack": 1},
    "relay": {"lag": 0.25},
    "connections": {"pub": {"local": 2, "tcp": 1}},
    "history": {"first": 1, "events": 20, "bytes": 4096},
    "journal": {"state": "ok", "written": 18, "bytes": 65536},
    "engines": [
        engine("audit.1", "running", restarts=2, events=9, dropped_kinds={"progress": 3}, progress={"pct": 40.0}, last_event=1001.5),
        engine("audit.2", "backoff"),
        engine("crawl", "running", origin="east"),  # relayed by a hub
    ],
    "queues": {"scan": {"queued": 7, "running": 2, "done": 5, "failed": 1, "dead": 0, "rate": 0.5, "max_queued": 100, "max_attempts": 3}},
}


def samples(reply: dict[str, Any]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for family in families(reply) for s in family.samples}


def value(got: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, /, **labels: str) -> float | None:
    return got.get((name, frozenset(labels.items())))


def test_a_status_reply_becomes_the_metrics_it_holds() -> None:
    got = samples(REPLY)
    assert value(got, "bus_info", run="r1", version="9.9") == 1
    assert value(got, "bus_events_received_total", kind="log") == 7
    assert value(got, "bus_events_received_total", kind="finding") == 0  # (every engine kind, so a rate starts at 0)
    assert value(got, "bus_events_published_total", kind="state") == 6
    assert value(got, "bus_events_published_total", kind="welcome") is None  # (never published)
    assert value(got, "bus_events_rejected_total", reason="bad-msgpack") == 1
    assert value(got, "bus_events_rejected_total", reason="too-large") == 0
    assert value(got, "bus_relay_lag_seconds") == 0.25
    assert value(got, "bus_subscribers", transport="local") == 2 and value(got, "bus_subscribers", transport="tcp") == 1
    assert value(got, "bus_history_events") == 20 and value(got, "bus_history_bytes") == 4096
    assert value(got, "bus_journal_state", state="ok") == 1 and value(got, "bus_journal_state", state="off") == 0
    assert value(got, "bus_journal_lag_events") == 2 and value(got, "bus_journal_bytes") == 65536
    a1 = {"engine": "audit", "name": "audit.1"}
    assert {s: value(got, "bus_engine_state", **a1, state=s) for s in ENGINE_STATES} == {s: float(s == "running") for s in ENGINE_STATES}
    assert value(got, "bus_engine_state", engine="audit", name="audit.2", state="backoff") == 1
    assert value(got, "bus_engine_restarts_total", **a1) == 2 and value(got, "bus_engine_events_total", **a1) == 9
    assert value(got, "bus_engine_dropped_total", **a1, kind="progress") == 3
    assert value(got, "bus_engine_progress_ratio", **a1) == 0.4
    assert value(got, "bus_engine_progress_ratio", engine="audit", name="audit.2") is None  # (no percentage said)
    assert value(got, "bus_engine_last_event_timestamp_seconds", **a1) == 1001.5
    assert value(got, "bus_engine_state", engine="east/crawl", name="east/crawl", state="running") == 1
    assert {s: value(got, "bus_queue_jobs", queue="scan", state=s) for s in ("queued", "running", "done", "failed", "dead")} == {"queued": 7, "running": 2, "done": 5, "failed": 1, "dead": 0}
    assert value(got, "bus_queue_max_queued", queue="scan") == 100


def test_what_a_supervisor_does_not_say_is_left_out() -> None:
    older = {k: v for k, v in REPLY.items() if k not in ("kinds", "relay", "queues")} | {"journal": {"state": "off"}}
    names = {name for name, _ in samples(older)}
    assert not {"bus_events_received_total", "bus_relay_lag_seconds", "bus_queue_jobs", "bus_journal_bytes", "bus_journal_lag_events"} & names
    assert value(samples(older), "bus_journal_state", state="off") == 1


def test_an_engine_state_newer_than_us_is_shown_as_it_is() -> None:
    got = samples({**REPLY, "engines": [engine("x", "hibernating")]})
    assert value(got, "bus_engine_state", engine="x", name="x", state="hibernating") == 1
    assert value(got, "bus_engine_state", engine="x", name="x", state="running") == 0


def test_the_states_are_the_supervisors() -> None:
    assert set(ENGINE_STATES) == {str(s) for s in State}


def test_no_supervisor_is_bus_up_0_and_the_scrape_still_answers() -> None:
    with socket.socket() as probe:  # a port nobody serves
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    collector = StatusCollector(f"tcp://127.0.0.1:{port}", timeout=0.2)
    try:
        body, content_type = render(registry_for(collector), None)
    finally:
        collector.close()
    assert content_type.startswith("text/plain; version=0.0.4")
    parsed = [(s.name, s.labels, s.value) for family in text_string_to_metric_families(body.decode()) for s in family.samples]
    assert parsed == [("bus_up", {}, 0.0)]
    assert collector.status() is None  # (closed: it asks nothing more)


def test_the_metrics_address_is_host_and_port() -> None:
    assert listen_address("127.0.0.1:9700") == ("127.0.0.1", 9700)
    assert listen_address("[::1]:0") == ("::1", 0)
    assert listen_address("0.0.0.0:80") == ("0.0.0.0", 80)
    for bad in ("9700", ":9700", "host:", "host:port", "host:70000", "host:-1"):
        with pytest.raises(UsageError, match="is not HOST:PORT"):
            listen_address(bad)


def test_bus_web_serves_no_metrics_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aiohttp")
    from bus.runtime import resolve
    from bus.web import server

    for name in [m for m in sys.modules if m == "prometheus_client" or m.startswith("prometheus_client.")]:
        monkeypatch.setitem(sys.modules, name, None)  # (as if not installed)
    monkeypatch.delitem(sys.modules, "bus.metrics")
    assert server._metrics_for(resolve("tcp://127.0.0.1:1")) is None
