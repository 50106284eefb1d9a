"""What the supervisor and `bus attach` share about the processes they run (no sockets).

- `Inbox`: the hand-off from helper threads (reading pipes, waiting for exits) to a
  loop that polls its `fileno()`; bounded by items and bytes, so output is slowed,
  never lost, and never grows our memory. What goes through it are typed messages:
  `OutputLines`, `StreamClosed`, `ProcessExited` (and a hub's own, supervisor/hub.py).
- `read_lines` and `wait_exit`: the helper threads where no pump runs (Windows, `bus attach`).
- `exit_info`: a return code in words; `signal_group`: a signal to a process group.

POSIX: each engine leads its own session and process group, and signals go to the
whole group (grandchildren included). Windows has no process groups to signal (see
README, "Platforms"): there the callers send CTRL_BREAK_EVENT or TerminateProcess.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator, Sequence

POSIX = os.name == "posix"
STREAMS = ("stdout", "stderr")
MAX_LINE = 64 * 1024  # stdout/stderr lines longer than this are cut (the supervisor's default, and bus attach's)


def own_group() -> dict[str, Any]:
    """Popen options that put a process in a process group of its own (POSIX: its own session)."""
    if POSIX:
        return {"start_new_session": True}
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # pragma: no cover - Windows


def helper_thread(name: str, target: Callable[..., None], *args: Any) -> None:
    """Start a daemon thread that owns no sockets (a pipe reader, a waiter)."""
    threading.Thread(target=target, args=args, name=name, daemon=True).start()


@dataclass(frozen=True, slots=True)
class OutputLines:
    """What one read of a pipe held: complete lines as (text, bytes cut off it, wall time)."""

    source: object   # whose pipe: the supervisor's process handle, or None in bus attach
    stream: str      # stdout | stderr
    lines: Sequence[tuple[str, int, float]]


class LineBlock(Sequence[tuple[str, int, float]]):
    """Lines read in one go, none of them cut, kept as the one string they arrived in
    (joined by newlines) until they are taken: in the inbox a short line costs its
    bytes, not a tuple and a string of its own each (about 150 bytes for 30 characters)."""

    __slots__ = ("text", "at", "_lines")

    def __init__(self, text: str, at: float) -> None:
        self.text, self.at = text, at
        self._lines: list[str] | None = None

    def _split(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def __len__(self) -> int:
        return len(self._split())

    def __getitem__(self, index: int) -> tuple[str, int, float]:  # type: ignore[override]
        return self._split()[index], 0, self.at

    def __iter__(self) -> Iterator[tuple[str, int, float]]:
        at = self.at
        for line in self._split():
            yield line, 0, at


@dataclass(frozen=True, slots=True)
class StreamClosed:
    source: object
    stream: str


@dataclass(frozen=True, slots=True)
class ProcessExited:
    source: object
    code: int        # the return code (negative: killed by that signal, POSIX)
    at: float        # wall time it was seen


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
    memory (64 KiB lines x 10,000 items would be 640 MB; short lines come in blocks, LineBlock,
    so the bound holds about 250,000 of 30 characters): a reader over the
    bound waits, its child's pipe fills, and the child waits on its writes.
    """

    def __init__(self, maxsize: int = 10_000, max_bytes: int = 8 * 1024 * 1024) -> None:
        self._items: deque[tuple[int, object]] = deque()
        self._bytes = 0
        self._maxsize, self._max_bytes = maxsize, max_bytes
        self._room = threading.Condition()
        self._wakeup = Wakeup()

    def fileno(self) -> int:
        return self._wakeup.fileno()

    def put(self, item: object, size: int = 0) -> None:
        """Queue `item` (`size`: the bytes it holds); blocks while the inbox is full."""
        with self._room:
            # An item bigger than the whole bound still goes in alone, never waits for ever.
            while self._items and (len(self._items) >= self._maxsize or self._bytes + size > self._max_bytes):
                self._room.wait()
            self._items.append((size, item))
            self._bytes += size
        self._wakeup.wake()

    def drain(self, limit: int = 1000) -> list[object]:
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


def read_lines(source: object, stream: str, pipe: IO[bytes], inbox: Inbox, max_line: int) -> None:
    """Helper thread (where there is no pump: Windows, `bus attach`): an inbox item per line,
    over-long lines cut at `max_line` bytes; `source` says whose pipe it is."""
    try:
        while True:
            line = pipe.readline(max_line)
            if not line:
                break
            cut = 0
            if not line.endswith(b"\n") and len(line) >= max_line:
                cut = _skip_rest_of_line(pipe, max_line)
            text = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
            inbox.put(OutputLines(source, stream, [(text, cut, time.time())]), len(line))  # (the pump's form: a list of lines)
    except (OSError, ValueError):
        pass  # the pipe was closed under us
    finally:
        inbox.put(StreamClosed(source, stream))
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


def wait_exit(source: object, proc: subprocess.Popen[bytes], inbox: Inbox) -> None:
    """Helper thread: reap the child and report how it ended."""
    code = proc.wait()
    inbox.put(ProcessExited(source, code, time.time()))


def exit_info(returncode: int, at: float) -> ExitInfo:
    if returncode < 0:  # POSIX: killed by signal -returncode
        signum = -returncode
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"SIG{signum}"
        return ExitInfo(code=None, signal=signum, signame=name, at=at)
    return ExitInfo(code=returncode, signal=None, signame="", at=at)


def signal_group(group: int, sig: int) -> bool:
    """Signal a process group (it outlives its leader: grandchildren are reached
    too). False if the group is gone. `sig` 0 only asks whether it exists. POSIX."""
    try:
        os.killpg(group, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
