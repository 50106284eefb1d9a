"""Replay what a run holds, then stop: for runs that are over, `tail --no-follow`.

    from bus.replay import Replay

    for event in Replay(run="last"):          # the newest run of the local session
        ...

It asks the supervisor's history when one answers; when none does (the run is
over and nothing else runs in that session) it reads the session's journal
file directly, read-only. `run` is None or "last" (the current run if a
supervisor runs, else the newest in the journal), or a run id (or a prefix of
one, at least 4 characters).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import zmq

from .control_client import ControlClient
from .errors import BusError, NotRunning
from .journal import JournalReader, RunInfo, open_journal
from .protocol import AnyEvent, RemoteProtocolError, decode, split_batch
from .runtime import Address, resolve


class Replay:
    def __init__(
        self,
        address: str | Address | None = None,
        *,
        run: str | None = None,
        last: int | None = None,
        since: float | None = None,
        kinds: Iterable[str] | None = None,
        engines: Iterable[str] | None = None,
        ctx: zmq.Context | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.address = address if isinstance(address, Address) else resolve(address)
        self.wanted_run, self.last, self.since = run, last, since
        self.kinds = sorted(kinds) if kinds else None
        self.engines = frozenset(engines) if engines else None
        self.timeout = timeout
        self._ctx = ctx
        self.run: str | None = None          # the run replayed, once known
        self.source = ""                     # "supervisor" or "journal"
        self.lost: list[tuple[int, int | None]] = []  # what retention already removed, or the journal never got
        self.broken: str | None = None         # why the journal stopped during this run (then `lost` ends with its rest)

    def __iter__(self) -> Iterator[AnyEvent]:
        ctx = self._ctx or zmq.Context()
        client = ControlClient(ctx, self.address, timeout=self.timeout)
        reader: JournalReader | None = None
        try:
            try:
                hello, _ = client.request("hello")
                self.source = "supervisor"
                runs = client.request("runs")[0]["runs"] if self.wanted_run not in (None, "last") else []
                self.run = self._choose(hello["run"], [r["run"] for r in runs])
                info = next((r for r in runs if r["run"] == self.run), {})
                pages = self._pages(lambda **q: self._from_supervisor(client, **q))
            except NotRunning:
                reader = open_journal(self.address)
                self.source = "journal"
                known = reader.runs()
                self.run = self._choose(known[-1].run if known else None, [r.run for r in known])
                info = next(r.as_dict() for r in known if r.run == self.run)
                pages = self._pages(lambda **q: self._from_journal(reader, **q))  # type: ignore[arg-type]
            for events in pages:
                yield from (e for e in events if self._wanted(e))
            if info.get("broken") and self.source == "journal":  # (a supervisor still holds the rest in memory)
                self.broken = str(info["broken"])
                self.lost.append(((info.get("broken_after") or 0) + 1, None))
        finally:
            client.close()
            if reader is not None:
                reader.close()
            if self._ctx is None:
                ctx.term()

    def _choose(self, newest: str | None, known: list[str]) -> str:
        wanted = self.wanted_run
        if wanted in (None, "last"):
            if newest is None:
                raise BusError(f"no run recorded in {self.address.label}")
            return newest
        matches = [run for run in known if run.startswith(wanted)] if len(wanted) >= 4 else [r for r in known if r == wanted]
        if len(matches) != 1:
            hint = "no such run" if not matches else "ambiguous"
            raise BusError(f"run {wanted!r}: {hint}; known runs: {', '.join(known) or 'none'}")
        return matches[0]

    def _pages(self, fetch: Any) -> Iterator[list[AnyEvent]]:
        after, until, last, first_page = 0, None, self.last, True
        while True:
            events, reply = fetch(after=after, until=until, last=last)
            if first_page and last is None and self.since is None and reply["first"] > 1:
                self.lost.append((1, reply["first"] - 1))
            first_page = False
            yield events
            if not reply["more"]:
                return
            after, until, last = reply["next"], reply["last"], None

    def _from_supervisor(self, client: ControlClient, **query: Any) -> tuple[list[AnyEvent], dict[str, Any]]:
        reply, frames = client.request("history", run=self.run, since=self.since, kinds=self.kinds, **query)
        try:
            return split_batch(frames, reply["frames"]), reply
        except RemoteProtocolError as exc:
            raise BusError(f"history from {self.address.label} is garbled: {exc}") from None

    def _from_journal(self, reader: JournalReader, **query: Any) -> tuple[list[AnyEvent], dict[str, Any]]:
        assert self.run is not None
        entries, reply = reader.page(self.run, since=self.since, kinds=self.kinds, **query)
        return [decode(entry.frames) for entry in entries], reply

    def _wanted(self, event: AnyEvent) -> bool:
        if self.engines is None or not event.engine:
            return True
        return event.engine in self.engines or event.engine.split(".", 1)[0] in self.engines


def list_runs(address: str | Address | None = None, *, timeout: float = 2.0) -> tuple[str | None, list[dict[str, Any]]]:
    """(current run or None, runs of the session) from the supervisor, else its journal."""
    address = address if isinstance(address, Address) else resolve(address)
    with zmq.Context() as ctx:
        client = ControlClient(ctx, address, timeout=timeout)
        try:
            reply, _ = client.request("runs")
            return reply["current"], reply["runs"]
        except NotRunning:
            pass
        finally:
            client.close()
    reader = open_journal(address)
    try:
        infos: list[RunInfo] = reader.runs()
        return None, [info.as_dict() for info in infos]
    finally:
        reader.close()
