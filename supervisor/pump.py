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
lines go to the loop as one inbox item `("lines", child, stream, [(text, cut,
ts), ...])`, then `("eof", child, stream)` and `("exit", child, code, ts)`. A
full inbox makes this thread wait: the engines' pipes fill and they wait on
their writes (slowed, never lost), as before.

Windows has no selectable pipes: there `spawn_readers` keeps a thread per pipe.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .children import Child, Inbox, wait_exit

CHUNK = 64 * 1024


@dataclass
class _Stream:
    child: Child
    name: str                  # stdout | stderr
    pipe: Any                  # the file object (closed at EOF)
    partial: bytearray = field(default_factory=bytearray)  # the start of a line not ended yet
    cut: int | None = None     # when a line ran past max_line: bytes of it skipped so far


class Pump:
    def __init__(self, inbox: Inbox, max_line: int) -> None:
        self.inbox, self.max_line = inbox, max_line
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._adds: deque[tuple[Child, subprocess.Popen[bytes]]] = deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="bus-pump", daemon=True)
        self._thread.start()

    def add(self, child: Child, proc: subprocess.Popen[bytes]) -> None:
        """Watch a process just spawned (called from the loop's thread)."""
        self._adds.append((child, proc))
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(10)
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, _ in self._selector.select():
                    what = key.data
                    if what is None:
                        self._take_adds()
                    elif isinstance(what, _Stream):
                        self._read(key.fileobj, what)
                    else:
                        self._reap(key.fileobj, *what)
        finally:
            for key in list(self._selector.get_map().values()):
                if isinstance(key.data, tuple):
                    os.close(key.fd)  # a pidfd of ours
            self._selector.close()
            self._wake_r.close()

    def _take_adds(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while self._adds:
            child, proc = self._adds.popleft()
            for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                os.set_blocking(pipe.fileno(), False)  # type: ignore[union-attr]
                self._selector.register(pipe, selectors.EVENT_READ, _Stream(child, name, pipe))
            pidfd = _pidfd(proc.pid)
            if pidfd is None:  # no pidfd here: a waiter thread, as before
                threading.Thread(target=wait_exit, args=(child, proc, self.inbox), name=f"{child.name}-wait", daemon=True).start()
            else:
                self._selector.register(pidfd, selectors.EVENT_READ, (child, proc))

    def _read(self, pipe: Any, stream: _Stream) -> None:
        try:
            data = os.read(pipe.fileno(), CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        now = time.time()
        lines = self._lines(stream, data, now)
        if not data:  # EOF: what is left is the last line
            if stream.cut is not None or stream.partial:
                lines.append(self._finish(stream, now))
        if lines:
            self.inbox.put(("lines", stream.child, stream.name, lines), sum(len(text) for text, _, _ in lines))
        if not data:
            self._selector.unregister(pipe)
            pipe.close()
            self.inbox.put(("eof", stream.child, stream.name))

    def _lines(self, stream: _Stream, data: bytes, now: float) -> list[tuple[str, int, float]]:
        """The lines `data` ends (a cut line is given once its end, or EOF, is seen)."""
        out = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            piece = data[start:] if end == -1 else data[start:end]
            if stream.cut is not None:
                stream.cut += len(piece)
            else:
                room = self.max_line - len(stream.partial)
                if len(piece) + (0 if end == -1 else 1) > room:  # the line runs past max_line (its newline counted, as readline does)
                    stream.partial += piece[:room]
                    stream.cut = len(piece) - room
                else:
                    stream.partial += piece
            if end == -1:
                break
            out.append(self._finish(stream, now))
            start = end + 1
        return out

    def _finish(self, stream: _Stream, now: float) -> tuple[str, int, float]:
        text = bytes(stream.partial).rstrip(b"\r\n").decode("utf-8", errors="replace")
        cut = stream.cut or 0
        stream.partial.clear()
        stream.cut = None
        return text, cut, now

    def _reap(self, pidfd: int, child: Child, proc: subprocess.Popen[bytes]) -> None:
        self._selector.unregister(pidfd)
        os.close(pidfd)
        code = proc.wait()  # it has exited: this returns at once
        self.inbox.put(("exit", child, code, time.time()))


def _pidfd(pid: int) -> int | None:
    """A descriptor that turns readable when `pid` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
