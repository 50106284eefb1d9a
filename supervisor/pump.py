"""One thread reads every engine's output and sees every exit (POSIX).

Why: three helper threads per engine (stdout, stderr, a waiter) made 30,000
threads for 10,000 engines; starting them slowed down with every thread alive,
so 10,000 trivial engines took 121 s against 2.7 s for 1,000, and long-lived
ones would run into the kernel's limit on tasks. Now one thread waits on all
pipes and all exits at once (selectors; an exit is a pidfd turning readable,
Linux 5.3+; elsewhere a small waiter thread per engine), so the cost of an
engine no longer grows with the number of engines.

It splits output into lines as the threads did: lines longer than `max_line`
bytes are cut (the rest of the line is counted, never held), and each read's
lines go to the loop as one inbox message `OutputLines` (bus/process.py), then
`StreamClosed` and `ProcessExited`, each naming the process's `Proc`. A
full inbox makes this thread wait: the engines' pipes fill and they wait on
their writes (slowed, never lost), as before.

Windows has no selectable pipes: there processes.py keeps a reader thread per
pipe (bus.process.read_lines) and a waiter, as before; `bus attach` uses those too.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

try:
    import fcntl
except ImportError:  # Windows: no pump there (processes.py keeps reader threads)
    fcntl = None  # type: ignore[assignment]

from bus.process import Inbox, LineBlock, OutputLines, ProcessExited, StreamClosed, Wakeup, wait_exit

from .children import Proc

CHUNK = 64 * 1024
PIPE_SIZE = 1024 * 1024  # what a pipe that filled a read grows to (_grow)
LINES_PER_ITEM = 32  # lines in one inbox item at most (those the slow path makes; a read's whole lines are one LineBlock)
LINE_COST = 100      # bytes a line (or a LineBlock) costs in the inbox besides its text, for the inbox's byte bound


@dataclass
class Lines:
    """One pipe's bytes into lines, as read_lines (bus/process.py) makes them with readline."""

    max_line: int
    partial: bytearray = field(default_factory=bytearray)  # the start of a line not ended yet
    cut: int | None = None     # when a line ran past max_line: bytes of it skipped so far

    def take(self, data: bytes, now: float) -> Sequence[tuple[str, int, float]]:
        """The lines `data` ends (a cut line is given once its end, or EOF, is seen)."""
        end = data.rfind(b"\n")
        if end != -1 and self.cut is None:  # the common case, split and decoded in C: whole lines, none too long
            whole = bytes(self.partial) + data[:end] if self.partial else data[:end]
            if len(whole) < self.max_line or max(map(len, whole.split(b"\n"))) < self.max_line:  # (its newline counts, as for readline)
                self.partial.clear()
                self._take_slowly(data[end + 1 :], now)  # the start of the next line (no newline: no line out)
                text = whole.decode("utf-8", errors="replace")
                if "\r" in text:
                    text = "\n".join(line.rstrip("\r") for line in text.split("\n"))
                return LineBlock(text, now)
        return self._take_slowly(data, now)

    def _take_slowly(self, data: bytes, now: float) -> list[tuple[str, int, float]]:
        out = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            piece = data[start:] if end == -1 else data[start:end]
            if self.cut is not None:
                self.cut += len(piece)
            else:
                room = self.max_line - len(self.partial)
                if len(piece) + (0 if end == -1 else 1) > room:  # the line runs past max_line (its newline counted, as readline does)
                    self.partial += piece[:room]
                    self.cut = len(piece) - room
                else:
                    self.partial += piece
            if end == -1:
                break
            out.append(self.finish(now))
            start = end + 1
        return out

    def pending(self) -> bool:
        """A last line without its newline is held (given at EOF by `finish`)."""
        return self.cut is not None or bool(self.partial)

    def finish(self, now: float) -> tuple[str, int, float]:
        text = bytes(self.partial).rstrip(b"\r\n").decode("utf-8", errors="replace")
        cut = self.cut or 0
        self.partial.clear()
        self.cut = None
        return text, cut, now


@dataclass
class _Stream:
    source: Proc
    name: str                  # stdout | stderr
    pipe: Any                  # the file object (closed at EOF)
    lines: Lines
    grown: bool = False        # its pipe was enlarged (it filled one CHUNK)


class Pump:
    def __init__(self, inbox: Inbox, max_line: int) -> None:
        self.inbox, self.max_line = inbox, max_line
        self._selector = selectors.DefaultSelector()
        self._wakeup = Wakeup()
        self._selector.register(self._wakeup.fileno(), selectors.EVENT_READ, None)
        self._adds: deque[tuple[Proc, subprocess.Popen[bytes]]] = deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="bus-pump", daemon=True)
        self._thread.start()

    def add(self, source: Proc, proc: subprocess.Popen[bytes]) -> None:
        """Watch a process just spawned (called from the loop's thread)."""
        self._adds.append((source, proc))
        self._wakeup.wake()

    def stop(self) -> None:
        """Stop reading (after the engines are gone). What it still hands over is dropped:
        nobody takes the inbox any more, and the thread may be waiting for room in it."""
        self._stopping = True
        self._wakeup.wake()
        deadline = time.monotonic() + 10
        while self._thread.is_alive() and time.monotonic() < deadline:
            self.inbox.drain()
            self._thread.join(0.05)

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, _ in self._selector.select():
                    try:
                        self._take(key)
                    except Exception:  # a bug of ours: said, and that pipe or process is given up, never all of them
                        self._give_up(key)
        finally:
            for key in list(self._selector.get_map().values()):
                if isinstance(key.data, tuple):
                    os.close(key.fd)  # a pidfd of ours
            self._selector.close()
            self._wakeup.close()

    def _take(self, key: selectors.SelectorKey) -> None:
        what = key.data
        if what is None:
            self._take_adds()
        elif isinstance(what, _Stream):
            self._read(key.fileobj, what)
        else:
            self._reap(key.fileobj, *what)

    def _give_up(self, key: selectors.SelectorKey) -> None:
        print(f"bus supervisor: internal error in the output pump (please report it):\n{traceback.format_exc().rstrip()}", file=sys.stderr, flush=True)
        what = key.data
        if what is None:
            return
        self._selector.unregister(key.fileobj)
        if isinstance(what, _Stream):  # its output is no longer read: said as its end, so the exit is not held up
            what.pipe.close()
            self.inbox.put(StreamClosed(what.source, what.name))
        else:  # its exit is waited for by a thread instead
            os.close(key.fd)
            threading.Thread(target=wait_exit, args=(what[0], what[1], self.inbox), name=f"{what[0].owner}-wait", daemon=True).start()

    def _take_adds(self) -> None:
        self._wakeup.clear()
        while self._adds:
            source, proc = self._adds.popleft()
            for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                os.set_blocking(pipe.fileno(), False)  # type: ignore[union-attr]
                self._selector.register(pipe, selectors.EVENT_READ, _Stream(source, name, pipe, Lines(self.max_line)))
            pidfd = _pidfd(proc.pid)
            if pidfd is None:  # no pidfd here: a waiter thread, as before
                threading.Thread(target=wait_exit, args=(source, proc, self.inbox), name=f"{source.owner}-wait", daemon=True).start()
            else:
                self._selector.register(pidfd, selectors.EVENT_READ, (source, proc))

    def _read(self, pipe: Any, stream: _Stream) -> None:
        try:
            data = os.read(pipe.fileno(), CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if len(data) == CHUNK and not stream.grown:
            _grow(pipe.fileno())
            stream.grown = True  # (tried once)
        now = time.time()
        lines = stream.lines.take(data, now)
        if isinstance(lines, LineBlock):  # (one read: at most CHUNK bytes of lines)
            self.inbox.put(OutputLines(stream.source, stream.name, lines), len(lines.text) + LINE_COST)
            lines = []
        if not data and stream.lines.pending():  # EOF: what is left is the last line
            lines.append(stream.lines.finish(now))
        for at in range(0, len(lines), LINES_PER_ITEM):  # (so a pass of the loop takes a bounded number of lines)
            batch = lines[at : at + LINES_PER_ITEM]
            self.inbox.put(OutputLines(stream.source, stream.name, batch), sum(len(text) + LINE_COST for text, _, _ in batch))
        if not data:
            self._selector.unregister(pipe)
            pipe.close()
            self.inbox.put(StreamClosed(stream.source, stream.name))

    def _reap(self, pidfd: int, source: Proc, proc: subprocess.Popen[bytes]) -> None:
        self._selector.unregister(pidfd)
        os.close(pidfd)
        code = proc.wait()  # it has exited: this returns at once
        self.inbox.put(ProcessExited(source, code, time.time()))


def _grow(fd: int) -> None:
    """Give a chatty engine's pipe 1 MiB instead of 64 KiB (Linux), so it can write on while this
    thread waits for the interpreter's lock. Only pipes that filled a read grow (pipe memory
    counts against a per-user limit). (Its effect on figure 8 was within that figure's noise:
    the child ran at 1.3-1.75x its time into cat with it, 1.7x in the one run before it.)"""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[union-attr, attr-defined]
    except (AttributeError, OSError):  # not Linux, or over /proc/sys/fs/pipe-max-size or the user's pipe pages
        pass


def _pidfd(pid: int) -> int | None:
    """A descriptor that turns readable when `pid` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
