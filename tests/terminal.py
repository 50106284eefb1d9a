"""A program on a pseudo-terminal, read through a terminal emulator (pyte) as a user would see it."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from typing import Callable

import pyte

from helpers import ROOT

COLS, ROWS = 140, 40


class Terminal:
    """A program on a pseudo-terminal; `screen` is what the terminal shows."""

    def __init__(self, args: list[str], program: list[str] | None = None) -> None:
        """`bus ARGS...`, or `program + args`. The terminal is its controlling one, so
        `interrupt()` is a real Ctrl-C (SIGINT to its foreground process group)."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
        for name in ("NO_COLOR", "TERM_PROGRAM", "CI"):
            env.pop(name, None)
        self.proc = subprocess.Popen([*(program or [sys.executable, "-m", "bus"]), *args], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env,
                                     start_new_session=True, preexec_fn=_take_terminal)
        os.close(slave)
        self.master = master
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the program closed the terminal
                chunk = b""
            with self.changed:
                if not chunk:
                    self.changed.notify_all()
                    return
                self.stream.feed(chunk)
                self.changed.notify_all()

    def lines(self) -> list[str]:
        with self.changed:
            return [line.rstrip() for line in self.screen.display]

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float = 60) -> list[str]:
        """The screen, once `condition(lines)` holds on it; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                lines = [line.rstrip() for line in self.screen.display]
                if condition(lines):
                    return lines
                left = deadline - time.monotonic()
                assert left > 0 and self.reader.is_alive(), "the screen never showed it:\n" + "\n".join(lines)
                self.changed.wait(left)

    def interrupt(self) -> None:
        os.write(self.master, b"\x03")

    def close(self) -> int:
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(10)
        os.close(self.master)
        return code


def _take_terminal() -> None:
    """(In the child, after setsid) make the pty on stdin its controlling terminal, and let
    Ctrl-C be Ctrl-C: a shell runs background jobs with SIGINT ignored, and that is inherited."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
