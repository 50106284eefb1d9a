"""The hub: one PUB endpoint for the streams of several supervisors.

How it works: a hub is a supervisor (core.py: its own session, sockets,
history, journal, welcome and control) whose events come from other
supervisors instead of engines. One thread per upstream follows it with a
`bus.Subscriber` (welcome, all of its run's history, gap refill, the rest of a
run whose supervisor died fetched from its journal when it is back) and hands
each event, in that supervisor's order, to the loop through the inbox. The loop
publishes it renumbered in the hub's own `gseq`, labelled with `origin` (the
upstream's label) and `origin_gseq` (its number there), so the hub's
subscribers get the same guarantees from the hub as from a supervisor.

An upstream's `sup.start` and `sup.stop` are published as `upstream` events
(`started`, `stopped`), never as themselves: a `sup.stop` still ends only the
hub's own run. When an upstream does not answer (1 s without a message and its
`hello` unanswered) the hub publishes `upstream lost` and keeps trying; when it
answers again, `upstream following`, and the Subscriber fills what was missed
from its history. Nothing is relayed twice: each upstream event reaches the loop
once (the Subscriber's catch-up), and after a run's `sup.stop` the follower waits
for a new run id before it subscribes again.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import zmq

from bus.control_client import ControlClient
from bus.errors import BusError, NotRunning
from bus.protocol import AnyEvent, UnknownEvent, Upstream
from bus.protocol.limits import ENGINE_NAME
from bus.runtime import Address, resolve
from bus.subscriber import Subscriber
from bus.view import EngineView

from .config import SupervisorConfig
from .core import Sink, Supervisor
from .fleet import Answer

RETRY = 1.0  # seconds between attempts to reach an upstream that does not answer


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    origin: str    # its label at the hub: in `origin`, in topics, in status
    address: Address


def parse_upstream(text: str) -> UpstreamSpec:
    """`NAME=ADDRESS`, or ADDRESS (the label is then made from it: tcp://10.0.0.5:7010 -> 10.0.0.5-7010)."""
    name, sep, address = text.partition("=")
    if not sep:
        name, address = "", text
        name = address.removeprefix("tcp://").replace(":", "-").replace("[", "").replace("]", "").strip("/").replace("/", "-")
    if not ENGINE_NAME.fullmatch(name):
        raise BusError(f"upstream {text!r}: the label {name!r} must be letters, digits, '_', '.', '-' (give NAME=ADDRESS)")
    return UpstreamSpec(name, resolve(address))


@dataclass(frozen=True, slots=True)
class Relayed:
    """Inbox message: an upstream's event, in that upstream's order."""

    origin: str
    event: AnyEvent


@dataclass(frozen=True, slots=True)
class UpstreamSaid:
    """Inbox message: a follower follows its upstream again, or lost it."""

    origin: str
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunCut:
    """Inbox message: an upstream's run ended without its sup.stop (its supervisor went away)."""

    origin: str
    run: str
    at: int


class Hub(Supervisor):
    spawns = False  # it runs no engines of its own

    def __init__(self, config: SupervisorConfig, upstreams: Sequence[UpstreamSpec], *, ctx: zmq.Context, sinks: Sequence[Sink] = ()) -> None:
        super().__init__(dataclasses.replace(config, exit_when_done=False), ctx=ctx, sinks=sinks)
        labels = [u.origin for u in upstreams]
        if not upstreams or len(set(labels)) != len(labels):
            raise BusError("a hub needs at least one upstream, each with its own label (NAME=ADDRESS)")
        self.upstreams = {u.origin: _Follower(u, self) for u in upstreams}
        self.seen: dict[tuple[str, str], EngineView] = {}

    # -- following ----------------------------------------------------------------------

    def _begin(self) -> None:
        for follower in self.upstreams.values():
            follower.start()

    def _end(self) -> None:
        for follower in self.upstreams.values():
            follower.stopping.set()
        for follower in self.upstreams.values():
            follower.join(10)

    def _inbox_item(self, item: object) -> None:
        if isinstance(item, Relayed):
            self._relay(self.upstreams[item.origin], item.event)
        elif isinstance(item, UpstreamSaid):
            self._tell(self.upstreams[item.origin], item.state, item.reason)
        elif isinstance(item, RunCut):
            up = self.upstreams[item.origin]
            self._publish(Upstream(state="cut", address=up.spec.address.label, run=item.run, origin=up.spec.origin,
                                   reason=f"its supervisor went away after event {item.at} without ending the run (no sup.stop); a new run follows"))
        else:
            super()._inbox_item(item)

    def _relay(self, up: _Follower, event: AnyEvent) -> None:
        up.relayed += 1
        if event.kind == "sup.start":
            f = event.fields()  # type: ignore[union-attr]
            up.run_id = f["run"]
            self._publish(Upstream(state="started", address=up.spec.address.label, run=f["run"], pid=f["pid"], version=f["version"], engines=f["engines"],
                                   origin=up.spec.origin, origin_gseq=event.gseq, ts=event.ts))
            return
        if event.kind == "sup.stop":
            f = event.fields()  # type: ignore[union-attr]
            self._publish(Upstream(state="stopped", address=up.spec.address.label, run=up.run_id, code=f["code"], reason=f["reason"],
                                   origin=up.spec.origin, origin_gseq=event.gseq, ts=event.ts))
            return
        if isinstance(event, UnknownEvent):  # a kind newer than us: forwarded as it came, labelled
            header = {**event.header, "origin": up.spec.origin, "origin_gseq": event.gseq}
            header.pop("gseq", None)
            self._publish(dataclasses.replace(event, header=header, origin=up.spec.origin, gseq=None))  # type: ignore[arg-type]
            return
        relayed = dataclasses.replace(event, origin=up.spec.origin, origin_gseq=event.gseq, gseq=None)
        self._publish(relayed)
        if relayed.engine:
            key = (up.spec.origin, relayed.engine)
            seen = self.seen.get(key)
            if seen is None:
                seen = self.seen[key] = EngineView(relayed.engine, origin=up.spec.origin)
            seen.take(relayed, self.gseq)

    def _tell(self, up: _Follower, state: str, reason: str) -> None:
        """An upstream's follower says it follows, or lost it (it says each change once)."""
        up.state, up.reason = state, reason
        self._publish(Upstream(state=state, address=up.spec.address.label, run=up.run_id, reason=reason, origin=up.spec.origin))

    # -- what control requests see --------------------------------------------------------

    def engines_status(self, *, snapshot: bool = False) -> list[dict[str, Any]]:
        return super().engines_status(snapshot=snapshot) + [{**seen.status(), **(seen.seen() if snapshot else {})} for seen in self.seen.values()]

    def extra_status(self) -> dict[str, Any]:
        return {"upstreams": [
            {"origin": up.spec.origin, "address": up.spec.address.label, "state": up.state, "reason": up.reason, "run": up.run_id, "relayed": up.relayed}
            for up in self.upstreams.values()
        ]}

    def command(self, op: str, name: str) -> dict[str, Answer]:
        """Engines the hub relays are not its to start or stop: it says whom to ask."""
        if name in self.children:
            return super().command(op, name)
        said = {}
        for origin, engine in self.seen:
            if name in (engine, engine.split(".", 1)[0], f"{origin}/{engine}"):
                address = self.upstreams[origin].spec.address.label
                said[f"{origin}/{engine}"] = Answer(self.seen[origin, engine].state, remote=f"the hub only relays it; ask its supervisor: bus {op} {engine} {address}")
        return said or super().command(op, name)


class _Follower(threading.Thread):
    """Follows one upstream supervisor; owns its Subscriber (sockets live in this thread)."""

    def __init__(self, spec: UpstreamSpec, hub: Hub) -> None:
        super().__init__(name=f"hub-{spec.origin}", daemon=True)
        self.spec, self.hub = spec, hub
        self.stopping = threading.Event()
        self.told = "connecting"  # the state this thread last told the loop (this thread's own)
        self.cut_told = 0         # of its Subscriber's cut runs, how many were told (this thread's own)
        # Read and written by the hub's loop only (the thread talks to it through the inbox):
        self.state, self.reason, self.run_id, self.relayed = "connecting", "", "", 0

    def _say(self, state: str, reason: str = "") -> None:
        self.told = state
        self.hub._inbox.put(UpstreamSaid(self.spec.origin, state, reason))

    def run(self) -> None:
        ended: str | None = None  # the run whose sup.stop we relayed: wait for another before subscribing again
        while not self.stopping.is_set():
            if ended is not None and not self._new_run(ended):
                continue
            self.cut_told = 0
            try:
                with Subscriber(self.spec.address, ctx=self.hub.ctx, timeout=5.0, connect_timeout=None, gone_after=None) as sub:
                    self._follow(sub)
                    ended = sub.run if sub.ended else None
            except BusError as exc:  # refused (keys), or garbled: say why, keep trying
                self._lost(str(exc))
                self.stopping.wait(5 * RETRY)

    def _follow(self, sub: Subscriber) -> None:
        """Relay until its run ends (or the hub stops)."""
        while not self.stopping.is_set():
            try:
                event = sub.recv(timeout=0.5)
            except TimeoutError as exc:
                if sub.unreachable and self.told == "following":  # (before the first answer it is still "connecting")
                    self._lost(str(exc) if sub.run is None else "no answer to hello within 1s")
                continue
            except NotRunning as exc:  # it went away while we fetched its history: tried again
                if self.told == "following":
                    self._lost(str(exc))
                self.stopping.wait(RETRY)
                continue
            if event is None:
                return  # its run ended
            if self.told != "following":
                self._say("following", "" if self.told == "connecting" else "it answers again; what it published meanwhile comes from its history")
            for run, at in sub.cut[self.cut_told:]:  # its run ended without its sup.stop: said as that run's end
                self.hub._inbox.put(RunCut(self.spec.origin, run, at))
            self.cut_told = len(sub.cut)
            self.hub._inbox.put(Relayed(self.spec.origin, event), _size(event))

    def _lost(self, reason: str) -> None:
        if self.told != "lost":
            self._say("lost", reason)

    def _new_run(self, ended: str) -> bool:
        """After a run's end: True once the upstream runs another (or is gone, so the next one is new)."""
        client = ControlClient(self.hub.ctx, self.spec.address, timeout=RETRY)
        try:
            hello, _ = client.request("hello")
            if hello["run"] != ended:
                return True
        except (NotRunning, BusError):
            return True  # it is gone: whatever answers next is a new run
        finally:
            client.close()
        self.stopping.wait(RETRY)
        return False


def _size(event: AnyEvent) -> int:
    if isinstance(event, UnknownEvent):
        return sum(len(b) for b in event.blobs)
    return sum(len(getattr(event, name)) for name in event.BLOB_FIELDS)

