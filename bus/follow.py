"""What both subscribers (bus/subscriber.py: sync and asyncio) share, without sockets.

They drive the same catch-up (bus/catchup.py) and decide the same things the
same way:

- A supervisor that does not answer is retried. While it is away, a local
  subscriber reads what it needs from the session's journal. If it stays away
  `gone_after` seconds (default GONE_AFTER; None: wait for ever), or it is
  known dead (local: its supervisor.json names our run and a pid that no
  longer runs, and the journal holds no end of the run), `recv` raises
  SupervisorGone, saying how far the run got for us and how many events, if
  known, could not be had.
- A run that ended without its `sup.stop` for us (its supervisor died, and a
  new one runs at the address) is recorded in `cut` when the subscriber goes on
  with the new run: never silently.
- It tells the supervisor how far it is (`hello` with `subscriber` and `at`)
  every REPORT_EVERY seconds and when the run has ended for it (`done`), so a
  supervisor whose run is over keeps serving history to subscribers still
  behind, up to its `serve_after` (docs/PROTOCOL.md, "Control").
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Iterable

from .catchup import ALL, Catchup, Need
from .control_client import RequestFailed
from .errors import BusError, Denied, NotRunning
from .journal import open_journal
from .keys import HandshakeWatch
from .protocol import RemoteProtocolError, decode, split_batch
from .runtime import MAX_WAIT, Address, resolve

QUIET = 1.0          # seconds without a message before asking the supervisor what we may have missed
GONE_AFTER = 30.0    # seconds without an answer before a subscriber says its supervisor is gone
REPORT_EVERY = 5.0   # seconds between telling the supervisor how far we are


class SupervisorGone(NotRunning):
    """The supervisor of the run we follow is gone (or unreachable for `gone_after`)."""


class Following:
    def __init__(
        self,
        address: str | Address | None,
        *,
        engines: Iterable[str] | None,
        kinds: Iterable[str] | None,
        history: int | str | None,
        since: float | None,
        timeout: float,
        connect_timeout: float | None,
        hwm: int,
        gone_after: float | None,
    ) -> None:
        """`history`: "all" (everything the supervisor holds of this run), N (the
        newest N matching events) or None (live only); `since`: events from that
        Unix time on instead. `timeout` bounds each control request;
        `connect_timeout` bounds the wait for a supervisor (None: wait); `hwm`:
        messages queued for us before the publisher drops (then refilled from
        history); `gone_after`: how long a supervisor may not answer before
        `recv` raises SupervisorGone (None: for ever)."""
        self.address = address if isinstance(address, Address) else resolve(address)
        if not (history in (ALL, None) or (isinstance(history, int) and history >= 0)):
            raise BusError(f"history must be 'all', a number >= 0 or None, got {history!r}")
        if gone_after is not None and not 0 < gone_after <= MAX_WAIT:
            raise BusError(f"gone_after must be a number of seconds up to a week (or None), got {gone_after!r}")
        self.catchup = Catchup(history=history, since=since, kinds=kinds, engines=engines)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.hwm = hwm
        self.gone_after = gone_after
        self.id = uuid.uuid4().hex[:12]  # how the supervisor tells us from other subscribers
        self._heard = time.monotonic()  # when the SUB socket last gave us something (or we last probed)
        self._reported = 0.0            # when we last told the supervisor how far we are
        self._told_done = False
        self._away_since: float | None = None  # the supervisor has not answered since then
        self._known_last = 0            # the newest gseq of our run the supervisor said it had
        self.unreachable = False        # the last attempt to reach the supervisor got no answer (a hub shows its upstreams so)
        self._watch: HandshakeWatch | None = None  # the SUB socket's TCP handshakes (a refused key is said at once)

    # What the catch-up knows, for callers.
    @property
    def run(self) -> str | None:
        return self.catchup.run

    @property
    def lost(self) -> list[tuple[int, int | None]]:
        return self.catchup.lost

    @property
    def cut(self) -> list[tuple[str, int]]:
        """Runs that ended without their end for us: (run id, the last gseq we had of it)."""
        return self.catchup.cut

    @property
    def ended(self) -> bool:
        return self.catchup.ended

    @property
    def refills(self) -> int:
        """How many gaps were filled from history (0 for a subscriber that kept up)."""
        return self.catchup.refills

    @property
    def position(self) -> int:
        """The gseq of the newest event of our run handed out (or skipped by filters)."""
        return self.catchup.position

    def _quiet_for(self) -> float:
        return time.monotonic() - self._heard

    def _wait_ms(self, deadline: float | None) -> int:
        """How long to poll: until the deadline or the next quiet probe, whichever is first."""
        wait = max(0.0, QUIET - self._quiet_for())
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        return int(wait * 1000) + 1

    def _history_args(self, need: Need) -> dict[str, Any]:
        return {"after": need.after, "until": need.until, "last": need.last, "since": need.since, "kinds": self.catchup.history_kinds, "run": self.run}

    def _report_args(self, done: bool = False) -> dict[str, Any]:
        self._reported = time.monotonic()
        return {"subscriber": self.id, "run": self.run, "at": self.position, "done": done}

    def _report_due(self) -> bool:
        return self.catchup.live and time.monotonic() - self._reported >= REPORT_EVERY

    def _done_due(self) -> bool:
        """The run ended for us and we have not said so yet."""
        if self.catchup.ended and not self._told_done:
            self._told_done = True
            return True
        return False

    def _leaving(self) -> bool:
        """Closing before the run ended, after telling the supervisor how far we were: say we are done."""
        if self._reported and not self._told_done and not self.unreachable:
            self._told_done = True
            return True
        return False

    def _give(self, reply: dict[str, Any], frames: list[Any]) -> None:
        try:
            events = split_batch(frames, reply["frames"])
        except RemoteProtocolError as exc:
            raise BusError(f"history from {self.address.label} is garbled: {exc}") from None
        self.catchup.give(events, reply)

    def _refused(self, exc: RequestFailed) -> None:
        """History refused: an earlier run's rest that this supervisor has no journal of."""
        if exc.code != "unknown-run":
            raise exc
        self.catchup.unavailable()

    def _refused_key(self) -> None:
        """The supervisor refused our key for subscribing (an engine key, say): Denied, at once."""
        verdict = self._watch.verdict(definite=True) if self._watch is not None else None
        if verdict is not None:
            raise Denied(verdict)

    def _answered(self, hello: dict[str, Any] | None = None) -> None:
        self.unreachable, self._away_since = False, None
        if hello is not None and hello.get("run") == self.run:
            self._known_last = max(self._known_last, int(hello.get("last") or 0))

    def _no_answer(self) -> None:
        """The supervisor did not answer (after what the local journal could give):
        SupervisorGone when that has lasted `gone_after`, or at once when it is known dead."""
        self.unreachable = True
        now = time.monotonic()
        if self._away_since is None:
            self._away_since = now
        if self.catchup.ended or self.run is None or self.catchup.ready:
            return  # (what the journal gave goes out first; the next probe decides)
        dead = self._local_supervisor_dead()
        if dead is not None:
            raise SupervisorGone(
                f"the supervisor of run {self.run} at {self.address.label} is gone ({dead}): its journal ends after "
                f"event {self.position}; what it published after that was never written down"
            )
        if self.gone_after is not None and now - self._away_since >= self.gone_after:
            more = self._known_last - self.position
            missing = f"at least {more} more event(s) it had published could not be had" if more > 0 else "what it published after that, if anything, could not be had"
            raise SupervisorGone(
                f"no answer from the supervisor at {self.address.label} for {self.gone_after:g}s (it, its host or the network is gone): "
                f"run {self.run} stopped for us after event {self.position}; {missing}"
            )

    def _local_supervisor_dead(self) -> str | None:
        """Why the local supervisor of our run is known dead, or None (remote, alive, or another run started)."""
        session = self.address.session
        if session is None:
            return None
        info = session.read_info()
        if info is None:
            return "no supervisor runs in the session"
        if info.get("run") != self.run:
            return None  # a new run is starting there: its welcome will come
        pid = info.get("pid")
        if isinstance(pid, int) and not _alive(pid):
            return f"pid {pid} no longer runs: killed?"
        return None

    def _from_journal(self) -> bool:
        """No supervisor answers: fetch what is needed (or, if nothing is, the rest
        of our run) from the session's journal on this machine. False if there is none."""
        if self.run is None:
            return False
        try:
            reader = open_journal(self.address)
        except NotRunning:
            return False
        try:
            info = next((r for r in reader.runs() if r.run == self.run), None)
            if info is None:
                return False
            if self.catchup.need is None:
                self.catchup.probe({"run": info.run, "last": info.last})
            while (need := self.catchup.need) is not None:
                entries, reply = reader.page(info.run, after=need.after, until=need.until, last=need.last, since=need.since, kinds=self.catchup.history_kinds)
                self.catchup.give([decode(entry.frames) for entry in entries], reply)
            return True
        finally:
            reader.close()


def _alive(pid: int) -> bool:
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (not ours to signal), or we cannot tell
