"""Metrics in the Prometheus text format (OpenMetrics when a scraper asks for it).

How it works: `StatusCollector` is a prometheus_client collector. Each scrape
calls its `collect()`, which asks the supervisor `status` over its control
socket (bus.control_client) and turns the reply into metric families
(`families`): nothing polls between scrapes, and the supervisor's loop stays
the only owner of what it counts. A supervisor that does not answer within the
timeout gives `bus_up 0` and nothing else, so the scrape itself still succeeds.

`bus web` serves it at /metrics, off its event loop (bus/web/server.py);
`bus up --metrics HOST:PORT` serves it with `MetricsServer` (prometheus_client's
own HTTP server) in a thread of the launcher's process, beside (never inside) the
supervisor's loop. The names are listed in README.md, "Metrics".

Needs the `metrics` extra (prometheus-client): importing this module without
it raises ImportError, which the commands turn into one line.
"""

from __future__ import annotations

import errno
import socket
import threading
from typing import Any, Iterable, Iterator

import zmq
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, start_http_server
from prometheus_client.registry import CollectorRegistry

from .control_client import ControlClient
from .errors import BusError, UsageError
from .protocol.errors import ENGINE_REJECTS
from .protocol.events import ENGINE_KINDS, KINDS
from .runtime import Address, resolve

TIMEOUT = 2.0  # seconds a scrape waits for the supervisor's answer (Prometheus' own scrape timeout is 10 s)
ENGINE_STATES = ("pending", "starting", "running", "unresponsive", "stopping", "backoff", "exited", "fatal", "lost")  # supervisor/lifecycle.py
JOURNAL_STATES = ("ok", "failed", "off")
JOB_STATES = ("queued", "running", "done", "failed", "dead")
PUBLISHED_KINDS = frozenset(KINDS) - {"welcome", "job.end"}  # (a welcome goes to one subscriber, unnumbered; a job.end is published as job.done, failed or dead)
ENGINE_LABELS = ["engine", "name"]  # the engine (its config name) and the instance (audit.2); `instance` is Prometheus' own label


class StatusCollector:
    """What a supervisor's `status` says, as metrics, asked at every scrape. `address`: an
    Address, or what `bus.runtime.resolve` takes (a session name, tcp://HOST:PORT, None for
    the default session), resolved at a scrape (so a local TCP session's supervisor.json may
    come later). Safe for concurrent scrapes: they take turns on one control socket."""

    def __init__(self, address: Address | str | None = None, *, timeout: float = TIMEOUT, ctx: zmq.Context | None = None) -> None:
        self._where = address
        self.timeout = timeout
        self._ctx = ctx if ctx is not None else zmq.Context()
        self._own_ctx = ctx is None
        self._client: ControlClient | None = None
        self._lock = threading.Lock()
        self._closed = False

    def describe(self) -> list[Metric]:
        return []  # (so registering asks the supervisor nothing)

    def collect(self) -> Iterator[Metric]:
        reply = self.status()
        up = GaugeMetricFamily("bus_up", "1 when the supervisor answered this scrape's status request, else 0")
        up.add_metric([], 1 if reply is not None else 0)
        yield up
        if reply is not None:
            yield from families(reply)

    def status(self) -> dict[str, Any] | None:
        """The supervisor's status reply, or None if none answered (or it refused us)."""
        with self._lock:
            if self._closed:
                return None
            try:
                if self._client is None:
                    where = self._where
                    self._client = ControlClient(self._ctx, where if isinstance(where, Address) else resolve(where), timeout=self.timeout)
                reply, _ = self._client.request("status")
                return reply
            except (BusError, zmq.ZMQError, OSError):
                if not isinstance(self._where, Address):  # (resolved again next time: a restarted supervisor's ports)
                    self._drop()
                return None

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
            if self._own_ctx:
                self._ctx.term()


def registry_for(collector: StatusCollector) -> CollectorRegistry:
    """A registry holding only `collector` (not prometheus_client's global one, nor its process metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type: the Prometheus text format, or OpenMetrics if `accept` asks for it."""
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type


# -- the status reply as metric families ------------------------------------------------


def families(reply: dict[str, Any]) -> Iterator[Metric]:
    """Every metric a status reply holds (keys a supervisor does not send are left out)."""
    yield from _supervisor(reply)
    yield from _events(reply)
    yield from _storage(reply)
    yield from _engines(reply.get("engines") or [])
    if reply.get("queues"):
        yield from _queues(reply["queues"])


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _by(family: GaugeMetricFamily | CounterMetricFamily, counts: dict[str, Any], known: Iterable[str] = ()) -> GaugeMetricFamily | CounterMetricFamily:
    """One sample per key of `counts`, and a 0 for each `known` key it lacks (so a rate starts at 0, not at nothing)."""
    for key in sorted(set(known) | set(counts)):
        family.add_metric([key], counts.get(key, 0))
    return family


def _supervisor(reply: dict[str, Any]) -> Iterator[Metric]:
    info = InfoMetricFamily("bus", "the supervisor's run and version")
    info.add_metric([], {"run": str(reply.get("run", "")), "version": str(reply.get("version", ""))})
    yield info
    yield _gauge("bus_start_time_seconds", "when the supervisor started (Unix time)", reply.get("started") or 0)
    yield _gauge("bus_stopping", "1 while the supervisor is stopping", 1 if reply.get("stopping") else 0)
    yield _counter("bus_internal_errors", "messages and requests that reached a bug of the supervisor's (should stay 0)", reply.get("internal_errors") or 0)
    pub = (reply.get("connections") or {}).get("pub") or {}
    subscribers = GaugeMetricFamily("bus_subscribers", "connections to the supervisor's publishing socket", labels=["transport"])
    for transport in ("local", "tcp"):
        subscribers.add_metric([transport], pub.get(transport, 0))
    yield subscribers
    if "relay" in reply:
        yield _gauge("bus_relay_lag_seconds", "from an engine's emit to the supervisor taking it: the last engine event of its latest pass that took any", reply["relay"].get("lag", 0))


def _events(reply: dict[str, Any]) -> Iterator[Metric]:
    counters = reply.get("counters") or {}
    kinds = reply.get("kinds")
    if kinds is not None:
        yield _by(CounterMetricFamily("bus_events_received", "engine events received and decoded, by kind (undecodable ones count in bus_events_rejected)", labels=["kind"]), kinds.get("received") or {}, ENGINE_KINDS)
        yield _by(CounterMetricFamily("bus_events_published", "events published (numbered, kept in history), by kind", labels=["kind"]), kinds.get("published") or {}, PUBLISHED_KINDS)
    yield _counter("bus_events_accepted", "engine events the supervisor took", counters.get("accepted", 0))
    yield _by(CounterMetricFamily("bus_events_rejected", "engine messages rejected, by reason", labels=["reason"]), reply.get("rejects") or {}, ENGINE_REJECTS)
    yield _counter("bus_output_lines", "lines engines printed (each published as a log, or the event its marker stands for)", counters.get("lines", 0))
    yield _counter("bus_screenshots_withheld", "screenshots not sent on pub while subscribers held too many image bytes (they come from history)", counters.get("withheld", 0))


def _storage(reply: dict[str, Any]) -> Iterator[Metric]:
    history = reply.get("history") or {}
    yield _gauge("bus_history_events", "events the in-memory history holds", history.get("events", 0))
    yield _gauge("bus_history_bytes", "bytes the in-memory history holds", history.get("bytes", 0))
    journal = reply.get("journal") or {"state": "off"}
    state = GaugeMetricFamily("bus_journal_state", "the journal: ok, failed (stopped writing) or off (1 for the current state)", labels=["state"])
    for name in sorted({*JOURNAL_STATES, journal.get("state", "off")}):
        state.add_metric([name], 1 if name == journal.get("state") else 0)
    yield state
    if journal.get("state", "off") == "off":
        return
    written = journal.get("written", 0)
    yield _counter("bus_journal_written_events", "events of this run written to the journal", written)
    yield _gauge("bus_journal_lag_events", "events published and not yet written to the journal (still growing: it failed)", max(0, (reply.get("counters") or {}).get("published", 0) - written))
    if "bytes" in journal:
        yield _gauge("bus_journal_bytes", "the journal's size on disk (database and write-ahead log)", journal["bytes"])


def _engines(engines: list[dict[str, Any]]) -> Iterator[Metric]:
    state = GaugeMetricFamily("bus_engine_state", "1 for the state each engine instance is in, 0 for the others", labels=[*ENGINE_LABELS, "state"])
    restarts = CounterMetricFamily("bus_engine_restarts", "restarts of each engine instance", labels=ENGINE_LABELS)
    events = CounterMetricFamily("bus_engine_events", "events each engine instance sent that arrived", labels=ENGINE_LABELS)
    lost = CounterMetricFamily("bus_engine_lost", "events an engine instance sent that never arrived", labels=ENGINE_LABELS)
    dropped = CounterMetricFamily("bus_engine_dropped", "events an engine instance's SDK dropped when the bus did not keep up, by kind", labels=[*ENGINE_LABELS, "kind"])
    progress = GaugeMetricFamily("bus_engine_progress_ratio", "each engine instance's last progress, 0 to 1 (when it said a percentage)", labels=ENGINE_LABELS)
    last = GaugeMetricFamily("bus_engine_last_event_timestamp_seconds", "when each engine instance's last event was sent (Unix time)", labels=ENGINE_LABELS)
    for engine in engines:
        labels = _engine_labels(engine)
        current = str(engine.get("state") or "")
        for name in ENGINE_STATES if current in ENGINE_STATES or not current else (*ENGINE_STATES, current):
            state.add_metric([*labels, name], 1 if name == current else 0)
        restarts.add_metric(labels, engine.get("restarts") or 0)
        events.add_metric(labels, engine.get("events") or 0)
        lost.add_metric(labels, engine.get("lost") or 0)
        for kind, count in sorted((engine.get("dropped_kinds") or {}).items()):
            dropped.add_metric([*labels, kind], count)
        pct = (engine.get("progress") or {}).get("pct")
        if isinstance(pct, (int, float)):
            progress.add_metric(labels, pct / 100)
        if engine.get("last_event"):
            last.add_metric(labels, engine["last_event"])
    yield from (state, restarts, events, lost, dropped, progress, last)


def _engine_labels(engine: dict[str, Any]) -> list[str]:
    """[engine, name]; a hub's relayed engines are ORIGIN/NAME, as `bus status` and its commands name them."""
    name = str(engine.get("name", ""))
    base = str(engine.get("engine") or name.split(".", 1)[0])
    origin = engine.get("origin")
    return [f"{origin}/{base}", f"{origin}/{name}"] if origin else [base, name]


def _queues(queues: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("bus_queue_jobs", "jobs of each work queue by state: queued and running now, done and failed so far (they only grow), dead now", labels=["queue", "state"])
    bound = GaugeMetricFamily("bus_queue_max_queued", "the most jobs each queue may hold waiting", labels=["queue"])
    for queue, counts in sorted(queues.items()):
        for state in JOB_STATES:
            jobs.add_metric([queue, state], counts.get(state, 0))
        bound.add_metric([queue], counts.get("max_queued", 0))
    yield jobs
    yield bound


# -- serving /metrics over HTTP, from a thread (bus up --metrics) ---------------------------


def listen_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:PORT` for IPv6; port 0: any free one) -> (host, port); UsageError in one line if not."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--metrics {text!r} is not HOST:PORT (like 127.0.0.1:9700; port 0 picks a free one)")
    return host, int(port)


class MetricsServer:
    """/metrics of `registry` over HTTP (prometheus_client's own threaded server, a daemon
    thread), until `close()`. BusError in one line when it cannot bind (the port is taken,
    the host is not here)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        try:
            self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        except socket.gaierror as exc:
            raise UsageError(f"cannot serve metrics on {host}:{port}: no such host or address here ({exc.strerror})") from None
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                raise BusError(f"cannot serve metrics on {host}:{port}: {exc.strerror}; pick another with --metrics HOST:PORT (port 0 picks a free one)") from None
            raise
        bound = self._httpd.server_address
        self.url = f"http://{f'[{bound[0]}]' if ':' in bound[0] else bound[0]}:{bound[1]}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
