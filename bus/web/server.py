"""`bus web`: the bridge from a supervisor to browsers.

One asyncio loop runs four things:
- the follower: an AsyncSubscriber (history "all", gap refill) feeding every
  event of the run into the Board, in gseq order; when a run ends it waits for
  the next run at the same address;
- the status poller: the supervisor's `status` once a second (counters,
  uptime), and whether a supervisor answers at all;
- the streamer: ten times a second, the board's changes, serialized once and
  queued for every connected page;
- aiohttp, serving the page, the feed (server-sent events), the snapshot and
  the screenshots (docs/WEB.md), and /metrics for Prometheus (bus/metrics.py,
  the metrics extra: it asks the supervisor at each scrape, in a worker thread).

A page that connects, or reconnects, first gets a snapshot of the whole board,
then updates; a page too slow to take its updates gets a fresh snapshot instead
of a backlog. So a reload never shows stale or missing state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
import time
from importlib import resources
from typing import Any, AsyncIterator, Callable

import zmq
from aiohttp import web

from bus.control_client import ControlClient
from bus.errors import BusError
from bus.runtime import Address
from bus.replay import Replay, list_runs
from bus.subscriber import ALL, AsyncSubscriber

from .board import SHOTS_KEPT, Board

TICK = 0.1  # seconds between updates sent to pages: at most ten a second, whatever the event rate
STATUS_EVERY = 1.0  # seconds between status requests
KEEPALIVE = 15.0  # seconds of silence on a feed before a comment line keeps proxies from closing it
CLIENT_QUEUE = 50  # updates queued for one page before it gets a snapshot instead
RETRY_MS = 1000  # how soon a browser reconnects a dropped feed
STOP_WITHIN = 5.0  # seconds a stop waits for pages' connections to close

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}


class Page:
    """One connected feed: its queue of serialized messages."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        self.resync = False

    def put(self, message: bytes) -> None:
        if self.resync:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.resync = True  # it fell behind: a fresh snapshot replaces the backlog
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(b"")  # wake its writer


def sse(kind: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return f"id: {payload.get('gseq', 0)}\nevent: {kind}\ndata: {data}\n\n".encode()


class Bridge:
    def __init__(self, address: Address) -> None:
        self.address = address
        self.board = Board(address.label)
        self.pages: set[Page] = set()
        self.status_run: str | None = None  # the run the supervisor answering status runs
        self._polled = asyncio.Event()  # set after every status request, answered or not
        self._started = time.time()
        self._shown: set[str] = set()  # runs the board has shown, so the journal's are not shown twice
        self._cleared = False  # the board was cleared: pages get a snapshot, not an update
        self._tasks: list[asyncio.Task[None]] = []
        self._zmq = zmq.Context()
        self._metrics = _metrics_for(address)  # (None without the metrics extra)

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(coro) for coro in (self._poll_status(), self._follow(), self._stream())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for page in list(self.pages):
            page.resync = False
            with contextlib.suppress(asyncio.QueueFull):
                page.queue.put_nowait(None)
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics[0].close)  # (waits for a scrape in flight: at most its timeout)
        self._zmq.destroy(linger=0)

    # -- the three loops ------------------------------------------------------------

    async def _poll_status(self) -> None:
        client = ControlClient(self._zmq, self.address, timeout=2.0)
        try:
            while True:
                try:
                    reply, _ = await asyncio.to_thread(client.request, "status")
                except Exception as exc:  # noqa: BLE001 - BusError (no answer), or anything else: the page says it either way
                    self.status_run = None
                    if not self.board.ended:
                        self.board.set_connection(False, f"no answer from {self.address.label}: {exc}" if self.board.run else f"waiting for a supervisor at {self.address.label}")
                    else:
                        self.board.set_connection(False, self.board.note)
                else:
                    self.status_run = reply.get("run")
                    if reply.get("run") == self.board.run:
                        self.board.set_status(reply)
                        self.board.set_connection(True, self.board.note)
                self._polled.set()
                await asyncio.sleep(STATUS_EVERY)
        finally:
            client.close()

    async def _follow(self) -> None:
        while True:
            missed = await self._next_run()
            try:
                if missed is not None:
                    await self._from_journal(missed)
                else:
                    await self._live()
            except (BusError, TimeoutError) as exc:
                self.board.set_connection(False, f"lost {self.address.label}: {exc}")
            except Exception as exc:  # noqa: BLE001 - a long-running server: say it, then follow again
                print(f"bus web: following {self.address.label} failed: {type(exc).__name__}: {exc}; following again", file=sys.stderr, flush=True)
                self.board.set_connection(False, f"following {self.address.label} failed ({type(exc).__name__}); following again")

    async def _live(self) -> None:
        # It answered status a moment ago: if it does not answer now, its run is over (then the journal has it).
        sub = AsyncSubscriber(self.address, history=ALL, timeout=5.0, connect_timeout=2.0, gone_after=None)  # (the status poll says a supervisor is gone)
        try:
            async for event in sub:
                if sub.run is not None and sub.run != self.board.run:
                    self._begin(sub.run)
                self.board.apply(event)
            if not self.board.ended:
                self.board.set_connection(False, f"the supervisor at {self.address.label} went away before its run ended")
        finally:
            sub.close()

    async def _from_journal(self, run: str) -> None:
        """A run that started and ended between two status requests: from the session's journal."""
        events = await asyncio.to_thread(lambda: list(Replay(self.address, run=run)))
        self._begin(run)
        for event in events:
            self.board.apply(event)

    def _begin(self, run: str) -> None:
        self.board.begin(run)
        self._shown.add(run)
        self._cleared = True

    async def _next_run(self) -> str | None:
        """Wait until there is a run worth showing: a supervisor answering with a new
        run, or the board's own run if it has not seen its end (we lost it and it is
        back): None, follow it live. Locally, a run that came and went between two
        status requests, found in the session's journal: its id."""
        while True:
            self._polled.clear()
            await self._polled.wait()
            if self.status_run is not None and (self.status_run != self.board.run or not self.board.ended):
                if self.status_run == self.board.run:
                    self.board.run = None  # follow it again from the start: replaying "all" onto the old cards would count twice
                return None
            if self.status_run is None and self.address.session is not None and (missed := await self._missed_run()):
                return missed

    async def _missed_run(self) -> str | None:
        try:
            _, runs = await asyncio.to_thread(list_runs, self.address, timeout=1.0)
        except BusError:
            return None  # no journal (yet)
        # Only a run that has ended: one without an end is starting (its supervisor answers soon) or was killed.
        missed = [r for r in runs if r["started"] >= self._started and r["stopped"] is not None and r["run"] not in self._shown]
        return max(missed, key=lambda r: r["started"])["run"] if missed else None

    async def _stream(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            if self._cleared:
                self._cleared = False
                self.board.changes()  # the snapshot below holds it all
                message = sse("snapshot", self.board.snapshot())
            else:
                update = self.board.changes()
                if update is None:
                    continue
                message = sse("update", update)
            for page in self.pages:
                page.put(message)

    # -- HTTP -----------------------------------------------------------------------

    async def feed(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no", **PAGE_HEADERS})
        await response.prepare(request)
        page = Page()
        self.pages.add(page)
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode() + sse("snapshot", self.board.snapshot()))
            async for message in _messages(page, self):
                await response.write(message)
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.pages.discard(page)
        return response

    async def snapshot(self, request: web.Request) -> web.Response:
        return web.json_response(self.board.snapshot(), headers={"Cache-Control": "no-store", **PAGE_HEADERS})

    async def shot(self, request: web.Request) -> web.Response:
        run, gseq = request.match_info["run"], request.match_info["gseq"]
        found = self.board.shot(int(gseq)) if run == self.board.run and gseq.isdigit() else None
        if found is None:
            return web.json_response({"error": f"screenshot {gseq} of run {run} is not kept here (the newest {SHOTS_KEPT} per engine of the current run are)"}, status=404, headers=PAGE_HEADERS)
        mime, data = found
        return web.Response(body=data, content_type=mime, headers={"Cache-Control": "private, max-age=86400, immutable", **PAGE_HEADERS})

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus' scrape: the supervisor's status as metrics, asked now, off the loop (a blocking request)."""
        if self._metrics is None:
            return web.Response(status=501, text="bus web serves /metrics with the metrics extra: install bus-orchestrator[metrics] (pip install 'bus-orchestrator[metrics]')\n")
        _, scrape = self._metrics
        body, content_type = await asyncio.to_thread(scrape, request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name", "index.html")
        if name not in STATIC:
            raise web.HTTPNotFound()
        body = resources.files("bus.web").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC[name], charset="utf-8", headers={"Cache-Control": "no-cache", **PAGE_HEADERS})

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.get("/", self.static),
            web.get("/static/{name}", self.static),
            web.get("/feed", self.feed),
            web.get("/api/snapshot", self.snapshot),
            web.get("/shots/{run}/{gseq}", self.shot),
            web.get("/metrics", self.metrics),
            web.get("/favicon.ico", lambda _: web.Response(status=204)),
        ])
        return app


def _metrics_for(address: Address) -> tuple[Any, Callable[[str | None], tuple[bytes, str]]] | None:
    """(the collector, scrape(accept) -> (body, content type)) for /metrics; None without prometheus-client."""
    try:
        from bus.metrics import StatusCollector, registry_for, render
    except ImportError as exc:
        if not (exc.name or "").startswith("prometheus_client"):
            raise
        return None
    collector = StatusCollector(address)
    return collector, functools.partial(render, registry_for(collector))


async def _messages(page: Page, bridge: Bridge) -> AsyncIterator[bytes]:
    while True:
        try:
            message = await asyncio.wait_for(page.queue.get(), KEEPALIVE)
        except asyncio.TimeoutError:
            yield b": keepalive\n\n"
            continue
        if message is None:
            return
        if page.resync:
            page.resync = False
            yield sse("snapshot", bridge.board.snapshot())
        elif message:
            yield message


async def serve(address: Address, host: str, port: int, *, ready: Any) -> None:
    """Serve until cancelled; `ready(url)` is called once the port is bound."""
    bridge = Bridge(address)
    runner = web.AppRunner(bridge.app(), handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        await bridge.start()
        ready(f"http://{shown}:{bound[1]}/")
        await asyncio.Event().wait()
    finally:
        try:
            await asyncio.wait_for(_shut(bridge, runner), STOP_WITHIN)
        except asyncio.TimeoutError:
            pass  # a page that stopped reading holds a write: do not wait for it


async def _shut(bridge: Bridge, runner: web.AppRunner) -> None:
    await bridge.stop()
    await runner.cleanup()
