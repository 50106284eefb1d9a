"""Engine processes: spawn, capture output line by line, signal, reap.

Each child gets three helper threads that own no sockets: two read its stdout
and stderr line by line, one waits for it to exit. They hand what they see to
the supervisor's loop through the `Inbox`, a bounded queue plus a wake-up
socket the loop polls. A full inbox blocks the readers, so they stop reading
the pipes and the child waits on its writes: output is slowed, never lost.
Lines longer than `max_line` bytes are cut (the rest of the line is read and
counted, never held), so a child cannot make the supervisor's memory grow.

POSIX: each child leads its own session and process group, and signals go to
the whole group (grandchildren included). Windows has no process groups to
signal: the child gets CREATE_NEW_PROCESS_GROUP, stop is CTRL_BREAK_EVENT and
kill is TerminateProcess, and grandchildren are not reached (see README,
"Platforms").
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping

from bus.spool import SpoolAcks

from .config import EngineSpec
from .lifecycle import State
from .restart import RestartTracker

POSIX = os.name == "posix"
STREAMS = ("stdout", "stderr")
LAST_LOGS = 20  # log lines a snapshot shows per engine


class Wakeup:
    """A socket pair that wakes a poller: `wake()` from any thread, `clear()` by the one that waits."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)  # a wake-up already pending is enough: never wait for room

    def fileno(self) -> int:
        return self._reader.fileno()

    def wake(self) -> None:
        try:
            self._writer.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or we are closing)

    def clear(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class Inbox:
    """Thread-safe hand-off from helper threads to the loop, which polls `fileno()`.

    Bounded twice: by items and by the bytes of the lines it holds, so children
    writing long lines faster than the loop publishes them cannot grow our
    memory (64 KiB lines x 10,000 items would be 640 MB): a reader over the
    bound waits, its child's pipe fills, and the child waits on its writes.
    """

    def __init__(self, maxsize: int = 10_000, max_bytes: int = 8 * 1024 * 1024) -> None:
        self._items: deque[tuple[Any, ...]] = deque()
        self._bytes = 0
        self._maxsize, self._max_bytes = maxsize, max_bytes
        self._room = threading.Condition()
        self._wakeup = Wakeup()

    def fileno(self) -> int:
        return self._wakeup.fileno()

    def put(self, item: tuple[Any, ...], size: int = 0) -> None:
        """Queue `item` (`size`: the bytes it holds); blocks while the inbox is full."""
        with self._room:
            # An item bigger than the whole bound still goes in alone, never waits for ever.
            while self._items and (len(self._items) >= self._maxsize or self._bytes + size > self._max_bytes):
                self._room.wait()
            self._items.append((size, item))
            self._bytes += size
        self._wakeup.wake()

    def drain(self, limit: int = 1000) -> list[tuple[Any, ...]]:
        # Empty the wake-up socket *before* the queue: an item put after this
        # point comes with a fresh wake-up, so none is ever left unseen.
        self._wakeup.clear()
        items = []
        with self._room:
            while self._items and len(items) < limit:
                size, item = self._items.popleft()
                self._bytes -= size
                items.append(item)
            more = bool(self._items)
            self._room.notify_all()
        if more:
            self.wake()  # more left: come back after the other sockets had a turn
        return items

    def wake(self) -> None:
        self._wakeup.wake()

    def close(self) -> None:
        self._wakeup.close()


@dataclass
class ExitInfo:
    code: int | None
    signal: int | None
    signame: str
    at: float


@dataclass
class Child:
    """One engine instance: its spec, its process, and what the supervisor knows of it."""

    spec: EngineSpec
    name: str                    # instance name: "audit", or "audit.3" when there are several
    instance: int                # 1 .. spec.instances
    tracker: RestartTracker
    state: State = State.PENDING
    reason: str = ""             # why it is in its state (for status)
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    started: float = 0.0         # wall clock, for status
    spawns: int = 0
    open_streams: set[str] = field(default_factory=set)
    hello: bool = False
    bye: bool = False
    exit: ExitInfo | None = None          # how the current/last process ended
    spool: Path | None = None             # its crash spool file
    acks: SpoolAcks | None = None         # its header, mapped: we say there what we received
    # Timers (time.monotonic); None when not pending.
    exit_deadline: float | None = None    # publish the exit by then at the latest
    started_at: float | None = None       # STARTING: deemed running then
    restart_at: float | None = None       # BACKOFF: spawn again then
    kill_at: float | None = None          # STOPPING: SIGKILL then
    killed_at: float | None = None        # SIGKILL sent (it should be gone soon)
    stop_intent: str = ""                 # why we stopped it: stop, restart, shutdown, unresponsive
    stopped_by_us: bool = False           # its last exit was one we asked for
    last_seen: float = 0.0                # its last event, for the heartbeat check
    last_active: float = 0.0              # its last event but heartbeats, or output line, for idle_timeout
    unresponsive: str = ""                # why it is unresponsive: silent (no event), still (its SDK says), quiet (idle_timeout)
    check_at: float | None = None         # when to say that SDK-only settings do nothing for it (no hello by then)
    armed: float | None = None            # the earliest time the fleet's timer heap holds for it
    max_seq: int = 0                      # highest sequence number from its current process
    # Counters for status.
    events: int = 0              # events accepted from its SDK, all runs
    run_events: int = 0          # ... from the current process only
    lost: int = 0                # events its SDK sent that never arrived
    dropped: dict[str, int] = field(default_factory=dict)      # events its SDK dropped under pressure, by kind: earlier processes
    dropped_now: dict[str, int] = field(default_factory=dict)  # the same, this process so far (heartbeats, its bye, its spool)
    told_drops: int = 0          # of this process's drops, how many a note has said
    recovered: int = 0           # events recovered from its spool after a crash
    lines: int = 0               # stdout/stderr lines captured
    markers: int = 0             # legacy ##PROGRESS: markers understood
    bad_markers: int = 0
    # What a late joiner sees first (status and snapshot), from every event published for it.
    phase: str = ""
    progress: dict[str, Any] | None = None
    last_event_ts: float = 0.0
    logs: deque[list[Any]] = field(default_factory=lambda: deque(maxlen=LAST_LOGS))  # [ts, level, stream, message]
    screenshot: dict[str, Any] | None = None   # the newest one: gseq, name, mime, size, ts
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None        # the newest one: message, type, fatal, ts
    findings: int = 0
    spawn_error: str = ""
    # A remote engine: one the supervisor did not start (its hello attached it).
    remote: bool = False
    host: str = ""                # where it runs, from its hello
    via: str = ""                 # who sent its hello: "key NAME", "tcp ADDRESS" or "local"
    launcher: bool = False        # `bus attach` runs it, and reports its exit

    def new_process(self, pid: int | None) -> None:
        """A process of this engine began (spawned, or a remote one attached): fresh per-process counters."""
        self.pid = pid
        self.started = time.time()
        self.spawns += 1
        self.hello = self.bye = self.stopped_by_us = False
        self.run_events = self.max_seq = 0
        self.dropped, self.dropped_now, self.told_drops = add_counts(self.dropped, self.dropped_now), {}, 0
        self.exit, self.exit_deadline, self.spawn_error = None, None, ""

    def spawn(self, env: Mapping[str, str], inbox: Inbox, max_line: int, pump: Any = None) -> None:
        """Start the process; `pump` (supervisor/pump.py) reads its output and sees its exit,
        else helper threads do. Raises OSError (or ValueError) if it cannot start."""
        options: dict[str, Any] = {}
        if POSIX:
            options["start_new_session"] = True  # own session + process group
        else:  # pragma: no cover - Windows
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        proc = subprocess.Popen(
            list(self.spec.command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.spec.cwd,
            env=dict(env),
            close_fds=True,
            **options,
        )
        self.proc = proc
        self.new_process(proc.pid)
        self.open_streams = set(STREAMS)
        if pump is not None:
            pump.add(self, proc)
            return
        for name, pipe in zip(STREAMS, (proc.stdout, proc.stderr)):
            assert pipe is not None
            _thread(f"{self.name}-{name}", read_lines, self, name, pipe, inbox, max_line)
        _thread(f"{self.name}-wait", wait_exit, self, proc, inbox)

    def terminate_group(self) -> None:
        """Ask the engine (and, on POSIX, its whole process group) to stop with its stop signal."""
        if POSIX:
            self._signal_group(getattr(signal, self.spec.stop_signal))
        elif self.proc is not None and self.proc.returncode is None:  # pragma: no cover - Windows
            self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # reaches its new process group: SIGBREAK in Python

    def kill_group(self) -> None:
        """Kill the engine (and, on POSIX, every process left in its group)."""
        if POSIX:
            self._signal_group(signal.SIGKILL)
        elif self.proc is not None and self.proc.returncode is None:  # pragma: no cover - Windows
            self.proc.kill()

    def _signal_group(self, sig: int) -> None:
        if self.pid is not None:
            signal_group(self.pid, sig)


def observe(view: Any, event: Any, gseq: int) -> None:
    """Keep what status and snapshots show of an engine (a Child, or a hub's view of
    an upstream's engine: anything with these attributes) from one published event."""
    view.last_event_ts = event.ts
    kind, f = event.KIND, event
    if kind in ("phase.start", "phase.done", "phase.error"):
        view.phase = f.phase
    elif kind == "progress":
        view.progress = {k: getattr(f, k) for k in ("phase", "done", "total", "pct", "detail")}
    elif kind == "log":
        view.logs.append([f.ts, f.level, f.stream, f.message])
    elif kind == "screenshot":
        view.screenshot = {"gseq": gseq, "name": f.name, "mime": f.mime, "size": f.size, "ts": f.ts}
    elif kind == "result":
        view.result = f.summary
    elif kind == "error":
        view.error = {"message": f.message, "type": f.type, "fatal": f.fatal, "ts": f.ts}
    elif kind == "finding":
        view.findings += 1


def add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted({*a, *b})}


def most_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Per kind, the larger count (counts only grow: the newest report wins, an older one cannot lower it)."""
    return {k: max(a.get(k, 0), b.get(k, 0)) for k in sorted({*a, *b})}


def signal_group(group: int, sig: int) -> bool:
    """Signal a process group (it outlives its leader: grandchildren are reached
    too). False if the group is gone. `sig` 0 only asks whether it exists. POSIX."""
    try:
        os.killpg(group, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _thread(name: str, target: Any, *args: Any) -> None:
    threading.Thread(target=target, args=args, name=name, daemon=True).start()


def read_lines(child: Child, stream: str, pipe: IO[bytes], inbox: Inbox, max_line: int) -> None:
    """Helper thread (where there is no pump: Windows, `bus attach`): an inbox item per line,
    over-long lines cut at `max_line` bytes."""
    try:
        while True:
            line = pipe.readline(max_line)
            if not line:
                break
            cut = 0
            if not line.endswith(b"\n") and len(line) >= max_line:
                cut = _skip_rest_of_line(pipe, max_line)
            text = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
            inbox.put(("lines", child, stream, [(text, cut, time.time())]), len(line))  # (the pump's format: a list of lines)
    except (OSError, ValueError):
        pass  # the pipe was closed under us
    finally:
        inbox.put(("eof", child, stream))
        try:
            pipe.close()
        except OSError:
            pass


def _skip_rest_of_line(pipe: IO[bytes], chunk: int) -> int:
    skipped = 0
    while True:
        more = pipe.readline(chunk)
        if not more:
            return skipped
        if more.endswith(b"\n"):
            return skipped + len(more) - 1
        skipped += len(more)


def wait_exit(child: Child, proc: subprocess.Popen[bytes], inbox: Inbox) -> None:
    """Helper thread: reap the child and report how it ended."""
    code = proc.wait()
    inbox.put(("exit", child, code, time.time()))


def exit_info(returncode: int, at: float) -> ExitInfo:
    if returncode < 0:  # POSIX: killed by signal -returncode
        signum = -returncode
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"SIG{signum}"
        return ExitInfo(code=None, signal=signum, signame=name, at=at)
    return ExitInfo(code=returncode, signal=None, signame="", at=at)


def engine_env(child: Child, *, endpoint: str, session_dir: str) -> dict[str, str]:
    """The engine's environment: ours, its own `env`, then the bus variables.

    The directory of the Python running the supervisor goes first on PATH, so
    `python` in an engine's command is the interpreter (and venv) bus runs in.
    """
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "") if bindir else env.get("PATH", "")
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    for inherited in ("BUS_SPOOL", "BUS_HEARTBEAT", "BUS_INSTANCE"):  # never pass ours on
        env.pop(inherited, None)
    env.update(child.spec.env)
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
    if child.spec.droppable is not None:
        env["BUS_DROPPABLE"] = ",".join(child.spec.droppable) or "none"
    return env
