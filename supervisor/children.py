"""One engine instance as the fleet knows it: `Child`, in three parts.

- `Proc`: the handle of one process of it, as the process seam (`ProcessSeam`:
  supervisor/processes.py, or a fake in tests) made it. Inbox messages name it,
  so what an earlier process said is told apart from the current one's.
- `Timers`: the times something is due for it (the fleet's heap holds the earliest).
- `EngineView` (bus/view.py): what status and snapshots show, from its published events.

The rest of `Child` is what the fleet decides by: its state, its current
process's facts (hello, bye, exit, sequence numbers, crash spool) and its counters.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from bus.process import ExitInfo
from bus.spool import SpoolAcks
from bus.view import EngineView, add_counts

from .config import EngineSpec
from .lifecycle import State
from .restart import RestartTracker


@dataclass(eq=False)
class Proc:
    """One process of an engine. Identity matters: messages of an earlier process are not the current one's."""

    pid: int
    owner: str   # the instance name


class ProcessSeam(Protocol):
    """What the fleet asks of the operating system (processes.Processes; a fake in tests)."""

    def spawn(self, owner: str, command: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> Proc:
        """Start a process; raises OSError (or ValueError: what the OS cannot take) if it cannot start."""
    def terminate(self, pid: int, signame: str) -> bool:
        """Its stop signal to its process group; False when nothing of it is left."""
    def kill(self, pid: int) -> bool:
        """SIGKILL to its process group; False when nothing of it is left."""
    def forget(self, pid: int) -> None:
        """It and its group are gone: let go of its handle (the watchdog stops guarding it)."""


@dataclass
class Timers:
    """When something is due for an engine (the clock's time; None when nothing is)."""

    exit_deadline: float | None = None    # publish the exit by then at the latest
    started_at: float | None = None       # STARTING: deemed running then
    restart_at: float | None = None       # BACKOFF: spawn again then
    kill_at: float | None = None          # STOPPING: SIGKILL then
    killed_at: float | None = None        # SIGKILL sent (it should be gone soon)
    check_at: float | None = None         # when to say that SDK-only settings do nothing for it (no hello by then)
    armed: float | None = None            # the earliest time the fleet's timer heap holds for it


@dataclass
class Child:
    """One engine instance: its spec, its current process, its timers, its view."""

    spec: EngineSpec
    name: str                    # instance name: "audit", or "audit.3" when there are several
    instance: int                # 1 .. spec.instances
    tracker: RestartTracker
    state: State = State.PENDING
    reason: str = ""             # why it is in its state (for status)
    view: EngineView = field(init=False)
    timers: Timers = field(default_factory=Timers)
    proc: Proc | None = None     # its current (or last) process, if the supervisor started it
    pid: int | None = None       # that process's pid (a remote engine's, from its hello)
    started: float = 0.0         # wall clock, for status
    spawns: int = 0
    open_streams: set[str] = field(default_factory=set)
    hello: bool = False
    bye: bool = False
    exit: ExitInfo | None = None          # how the current/last process ended
    spool: Path | None = None             # its crash spool file
    acks: SpoolAcks | None = None         # its header, mapped: we say there what we received
    stop_intent: str = ""                 # why we stopped it: stop, restart, shutdown, unresponsive
    stopped_by_us: bool = False           # its last exit was one we asked for
    last_seen: float = 0.0                # its last event, for the heartbeat check
    last_active: float = 0.0              # its last event but heartbeats, or output line, for idle_timeout
    unresponsive: str = ""                # why it is unresponsive: silent (no event), still (its SDK says), quiet (idle_timeout)
    max_seq: int = 0                      # highest sequence number from its current process
    spawn_error: str = ""
    # Counters for status.
    events: int = 0              # events accepted from its SDK (or its launcher), all runs
    run_events: int = 0          # ... from the current process only
    lost: int = 0                # events its SDK sent that never arrived
    dropped: dict[str, int] = field(default_factory=dict)      # events its SDK dropped under pressure, by kind: earlier processes
    dropped_now: dict[str, int] = field(default_factory=dict)  # the same, this process so far (heartbeats, its bye, its spool)
    told_drops: int = 0          # of this process's drops, how many a note has said
    recovered: int = 0           # events recovered from its spool after a crash
    lines: int = 0               # stdout/stderr lines captured
    markers: int = 0             # legacy ##PROGRESS: markers understood
    bad_markers: int = 0
    # A remote engine: one the supervisor did not start (its hello attached it).
    remote: bool = False
    host: str = ""                # where it runs, from its hello
    via: str = ""                 # who sent its hello: "key NAME", "tcp ADDRESS" or "local"
    launcher: bool = False        # `bus attach` runs it, and reports its exit

    def __post_init__(self) -> None:
        self.view = EngineView(self.name)

    def new_process(self, pid: int | None, now: float) -> None:
        """A process of this engine began (spawned, or a remote one attached): fresh per-process counters."""
        self.pid = pid
        self.started = now
        self.spawns += 1
        self.hello = self.bye = self.stopped_by_us = False
        self.run_events = self.max_seq = 0
        self.dropped, self.dropped_now, self.told_drops = add_counts(self.dropped, self.dropped_now), {}, 0
        self.exit, self.timers.exit_deadline, self.spawn_error = None, None, ""


def engine_env(child: Child, *, endpoint: str, session_dir: str, control: str = "") -> dict[str, str]:
    """The engine's environment: ours, its own `env`, then the bus variables.

    The directory of the Python running the supervisor goes first on PATH, so
    `python` in an engine's command is the interpreter (and venv) bus runs in.
    """
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "") if bindir else env.get("PATH", "")
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    for inherited in ("BUS_SPOOL", "BUS_HEARTBEAT", "BUS_INSTANCE", "BUS_QUEUE", "BUS_CONTROL"):  # never pass ours on
        env.pop(inherited, None)
    if endpoint.startswith("tcp://"):  # (no ipc: our local endpoints are keyless TCP on 127.0.0.1; CURVE keys of our environment would fail the handshake)
        env.pop("BUS_SERVER_KEY", None)
        env.pop("BUS_KEY", None)
    env.update(child.spec.env)
    if child.spec.port is not None:  # foreman's $PORT: the engine's base, +1 per instance
        env["PORT"] = str(child.spec.port + child.instance - 1)
    env.update(
        BUS_ENDPOINT=endpoint,
        BUS_ENGINE=child.name,
        BUS_INSTANCE=str(child.instance),
        BUS_SESSION_DIR=session_dir,
        PYTHONUNBUFFERED="1",
    )
    if child.spool is not None:
        env["BUS_SPOOL"] = str(child.spool)
    env["BUS_HEARTBEAT"] = f"{child.spec.heartbeat_timeout / 3:g}"  # 0: none (unset would mean a remote engine's default)
    if child.spec.queue:
        env["BUS_QUEUE"] = child.spec.queue  # the SDK's jobs() takes work from it ...
        env["BUS_CONTROL"] = control         # ... asking here (docs/PROTOCOL.md section 10)
    if child.spec.droppable is not None:
        env["BUS_DROPPABLE"] = ",".join(child.spec.droppable) or "none"
    return env
