"""bus.app for asyncio: the same Bus and handles, for a program with an event loop.

    from bus.aio import AsyncBus

    async with AsyncBus.start() as bus:           # or: bus = await AsyncBus.start()
        audit = await bus.spawn(["python", "audit_engine.py", url])
        async for event in audit.events():
            ...
        ended = await audit.wait()

Nothing here blocks the loop: requests and subscriptions are zmq.asyncio
sockets; starting and reaping the private supervisor run in a worker thread.
No signal handler is installed (uvicorn keeps its own). Make it inside the
loop that uses it (in a FastAPI lifespan, say); tasks may share one.
"""

from __future__ import annotations

import asyncio
import atexit
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Generator, Mapping, Sequence

import zmq.asyncio

from .app import END_KINDS, QUIET_CHECK, Ended, EndWatch, engine_table, instances_in, instances_of, one_event, private_settings, spawn_name, spawned
from .catchup import ALL
from .control_client import AsyncControlClient, RequestFailed
from .errors import BusError, NotRunning
from .hosted import HostedSupervisor
from .protocol import AnyEvent
from .runtime import Address, resolve
from .subscriber import AsyncSubscriber
from .work_client import MAX_JOB_WAIT, JobTimeout, ended, job_wait, result_of, submit_steps

__all__ = ["AsyncBus", "AsyncHandle", "Ended"]


class AsyncHandle:
    """An engine (all its instances): `async for event in h.events()`, `await h.wait()`, `await h.stop()`."""

    def __init__(self, bus: AsyncBus, name: str, names: Sequence[str], errors: Mapping[str, str] | None = None, after: int = 0) -> None:
        self.bus = bus
        self.name = name
        self.names = tuple(names)
        self.errors = dict(errors or {})
        self.after = after
        self._ended: Ended | None = None

    def _watch(self) -> EndWatch:
        return EndWatch(self.name, frozenset(self.names), self.after)

    async def events(self, *, history: int | str | None = ALL) -> AsyncIterator[AnyEvent]:
        """As Handle.events: in order, none lost, until every instance has ended."""
        watch = self._watch()
        async with self.bus.reading(self.names, history=history) as sub:
            async for event in self._follow(sub, watch, None):
                yield event
        self._ended = watch.ended()

    async def wait(self, timeout: float | None = None) -> Ended:
        if self._ended is None:
            watch = self._watch()
            async with self.bus.reading(self.names, kinds=END_KINDS) as sub:
                async for _ in self._follow(sub, watch, timeout):
                    pass
            self._ended = watch.ended()
        return self._ended

    async def _follow(self, sub: AsyncSubscriber, watch: EndWatch, timeout: float | None) -> AsyncIterator[AnyEvent]:
        """As Handle._follow."""
        until = None if timeout is None else time.monotonic() + timeout
        while not watch.done:
            wait = QUIET_CHECK if until is None else max(0.0, min(QUIET_CHECK, until - time.monotonic()))
            try:
                event = await sub.recv(timeout=wait)
            except TimeoutError:
                if until is not None and time.monotonic() >= until:
                    raise TimeoutError(f"{self.name} has not ended within {timeout:g}s") from None
                if sub.catchup.live and not sub.catchup.ready:
                    try:
                        watch.settle(await self.bus.request("snapshot"), sub.catchup.position)
                    except NotRunning:
                        pass
                continue
            if event is None:
                return
            if watch.take(event):
                yield event

    async def stop(self) -> None:
        await self.bus.request("stop", name=self.name)

    async def snapshot(self) -> dict[str, dict[str, Any]]:
        reply = await self.bus.request("snapshot")
        return instances_in(reply, self.names)

    def __repr__(self) -> str:
        return f"<AsyncHandle {self.name} {list(self.names)}>"


class AsyncBus:
    """`AsyncBus(ADDRESS)` for a running supervisor; `AsyncBus.start()` (awaited, or in `async with`) for a private one."""

    def __init__(self, address: str | Address | None = None, *, timeout: float = 10.0, _hosting: dict[str, Any] | None = None) -> None:
        self._address = address
        self.timeout = timeout
        self._hosting = _hosting
        self._hosted: HostedSupervisor | None = None
        self._opened = False
        self._closed = False
        self._spawned: list[AsyncHandle] = []
        self._reading: set[AsyncSubscriber] = set()

    @classmethod
    def start(cls, config: str | Path | None = None, *, session: str | None = None, keys: str | Path | None = None,
              listen: str | None = None, insecure: bool = False, timeout: float = 10.0, **settings: Any) -> AsyncBus:
        """As Bus.start; it starts when awaited or entered."""
        hosting = {"config": config, "session": session, "settings": private_settings(settings),
                   "keys": keys, "listen": listen, "insecure": insecure}
        return cls(None, timeout=timeout, _hosting=hosting)

    async def open(self) -> AsyncBus:
        if self._opened:
            return self
        if self._hosting is not None:
            h = self._hosting
            self._hosted = await asyncio.to_thread(HostedSupervisor, h["config"], h["session"], h["settings"], keys=h["keys"], listen=h["listen"], insecure=h["insecure"])
            self._address = self._hosted.session
        try:
            if self._hosted is not None:
                await asyncio.to_thread(self._hosted.wait_endpoints)
            self.address = self._address if isinstance(self._address, Address) else await asyncio.to_thread(resolve, self._address)
        except BaseException:
            if self._hosted is not None:
                self._hosted.let_go()
                await asyncio.to_thread(self._hosted.reap, 1.0)
            raise
        self.ctx = zmq.asyncio.Context()
        self._control = AsyncControlClient(self.ctx, self.address, timeout=self.timeout)
        self._opened = True
        atexit.register(self._at_exit)
        if self._hosted is not None:
            try:
                await self._wait_ready(self._hosted)
            except BaseException:
                await self.close()
                raise
        return self

    def __await__(self) -> Generator[Any, None, AsyncBus]:
        return self.open().__await__()

    async def _wait_ready(self, hosted: HostedSupervisor) -> None:
        began = time.monotonic()
        while True:
            hosted.check_start(began)
            try:
                if hosted.answered((await self._control.request("hello", timeout=0.25))[0]):
                    return
            except NotRunning:
                pass

    async def request(self, op: str, *, timeout: float | None = -1.0, **args: Any) -> dict[str, Any]:
        if self._closed or not self._opened:
            raise BusError("this AsyncBus is closed" if self._closed else "this AsyncBus is not open: await it, or use `async with`")
        return (await self._control.request(op, timeout=timeout, **args))[0]

    async def spawn(self, command: Sequence[str] | str, *, name: str | None = None, env: Mapping[str, str] | None = None,
                    cwd: str | Path | None = None, shell: bool = False, **settings: Any) -> AsyncHandle:
        """As Bus.spawn."""
        engine = spawn_name(name, command)
        table = engine_table(command, local=self.address.session is not None, env=env, cwd=cwd, shell=shell, **settings)
        reply = await self.request("spawn", name=engine, engine=table)
        handle = AsyncHandle(self, engine, *spawned(reply))
        self._spawned.append(handle)
        if self._hosted is not None:
            self._hosted.takes_up_to(settings.get("stop_timeout"))
        return handle

    # -- work queues: as Bus's -----------------------------------------------------------

    async def submit(self, queue: str, payload: Mapping[str, Any], *, id: str | None = None, wait: bool = False, timeout: float | None = None) -> str:
        return (await self.submit_many(queue, [payload], ids=None if id is None else [id], wait=wait, timeout=timeout))[0]

    async def submit_many(self, queue: str, payloads: Sequence[Mapping[str, Any]], *, ids: Sequence[str] | None = None, wait: bool = False, timeout: float | None = None) -> list[str]:
        steps = submit_steps(queue, [dict(p) for p in payloads], ids=ids, wait=wait, timeout=timeout)
        reply: Any = None
        try:
            while True:
                what, arg = steps.send(reply)
                reply = None
                if what == "sleep":
                    await asyncio.sleep(arg)
                    continue
                try:
                    reply = await self.request(what, **arg)
                except BusError as exc:
                    steps.throw(exc)
        except StopIteration as stop:
            return list(stop.value)

    async def job(self, job_id: str, *, wait: float | None = None) -> dict[str, Any]:
        args = {"wait": min(wait, MAX_JOB_WAIT)} if wait else {}
        return dict((await self.request("job", job=job_id, timeout=self.timeout + (wait or 0), **args))["job"])

    async def result(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.job(job_id, wait=job_wait(timeout, deadline) or None)
            if ended(job):
                return result_of(job)
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(f"job {job_id} is still {job['state']} after {timeout:g}s")

    async def jobs(self, queue: str | None = None, *, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return list((await self.request("jobs", queue=queue, state=state, limit=limit))["jobs"])

    async def retry(self, job_id: str) -> dict[str, Any]:
        return dict((await self.request("retry", job=job_id))["job"])

    async def handle(self, name: str) -> AsyncHandle:
        names = instances_of(await self.request("status"), name)
        if not names:
            raise RequestFailed("status", "unknown-engine", f"no engine {name!r} at {self.address.label}")
        return AsyncHandle(self, name, names)

    async def forget(self, handle: AsyncHandle | str) -> list[str]:
        return list((await self.request("forget", name=handle if isinstance(handle, str) else handle.name))["forgotten"])

    async def status(self) -> dict[str, Any]:
        return await self.request("status")

    async def event(self, gseq: int) -> AnyEvent | None:
        """Event `gseq` of this run, with its bytes (a screenshot), from the supervisor's
        history; None once history no longer holds it."""
        if self._closed or not self._opened:
            raise BusError("this AsyncBus is not open")
        if gseq < 1:
            return None
        reply, frames = await self._control.request("history", after=gseq - 1, until=gseq)
        return one_event(reply, frames, gseq)

    def subscriber(self, names: Sequence[str] | None = None, **options: Any) -> AsyncSubscriber:
        return AsyncSubscriber(self.address, engines=names, ctx=self.ctx, timeout=self.timeout, **options)

    @asynccontextmanager
    async def reading(self, names: Sequence[str], **options: Any) -> AsyncIterator[AsyncSubscriber]:
        if self._closed or not self._opened:
            raise BusError("this AsyncBus is closed" if self._closed else "this AsyncBus is not open")
        sub = self.subscriber(names, **options)
        self._reading.add(sub)
        try:
            async with sub:  # (its exit says we are done, or the supervisor waits for us at the end of its run)
                yield sub
        finally:
            self._reading.discard(sub)

    async def close(self) -> None:
        """As Bus.close."""
        if self._closed or not self._opened:
            self._closed = True
            return
        hosted = self._hosted
        try:
            if hosted is not None:
                if hosted.proc.poll() is None:
                    try:
                        await self._control.request("down", timeout=2.0)
                    except BusError:
                        hosted.let_go()
            else:
                for handle in self._spawned:
                    try:
                        await handle.stop()
                    except BusError:
                        pass
        finally:
            self._closed = True
            atexit.unregister(self._at_exit)
            self._control.close()
            if hosted is not None:
                await asyncio.to_thread(hosted.reap, 0.0 if hosted.proc.poll() is not None else hosted.close_wait)
            if not self._reading:
                self.ctx.term()

    def _at_exit(self) -> None:
        """The program ends with the bus open (its loop is gone): the private supervisor stops as its pipe closes."""
        if self._hosted is not None:
            self._hosted.let_go()
            self._hosted.reap(self._hosted.close_wait)

    async def __aenter__(self) -> AsyncBus:
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncBus {self._address}{' (private)' if self._hosting else ''}>"
