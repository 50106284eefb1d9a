"""Signals as wake-ups: the handlers do nothing but write the signal number to a
socket the supervisor's loop polls (one loop, no work in signal handlers)."""

from __future__ import annotations

import signal
import socket
from typing import Any


class SignalWake:
    """SIGINT/SIGTERM/SIGHUP handlers that only write the signal number to a socket."""

    SIGNALS = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._old = {name: signal.signal(getattr(signal, name), _ignore) for name in self.SIGNALS}

    def fileno(self) -> int:
        return self._reader.fileno()

    def signals(self) -> list[int]:
        try:
            return list(self._reader.recv(64))
        except (BlockingIOError, OSError):
            return []

    def close(self) -> None:
        for name, old in self._old.items():
            signal.signal(getattr(signal, name), old)
        signal.set_wakeup_fd(self._old_fd)
        self._reader.close()
        self._writer.close()


def _ignore(signum: int, frame: Any) -> None:
    """The wake-up fd carries the signal; the handler itself does nothing."""
