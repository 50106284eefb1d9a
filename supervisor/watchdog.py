"""Engines must not outlive their supervisor, even a SIGKILLed one (POSIX).

The supervisor starts this small process in a session of its own (as a bare
script, `python -S -E watchdog.py`, so it starts in milliseconds: nothing else
is imported), waits for it to say `ready`, and writes one line per change on
its stdin:
`+PGID` when an engine's process group starts, `-PGID` when that group is
gone, `bye` when it shuts down cleanly. This process only reads, so it costs
nothing while the supervisor lives. When the pipe closes without `bye`, the
supervisor died: it SIGKILLs every process group it still knows of (engines and
the grandchildren in their groups) and exits.

Why not PR_SET_PDEATHSIG: it is Linux-only, fires when the forking *thread*
ends, and is not inherited by grandchildren. A process that escapes its group
(setsid) is not reached either way; on Windows a Job Object would be needed
(not done: see README, "Platforms").
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from typing import IO

READY_TIMEOUT = 10.0  # seconds for the watchdog to start before we go on without it


def main(stream: IO[bytes], out: IO[bytes]) -> int:
    for name in ("SIGINT", "SIGHUP", "SIGTERM"):
        if hasattr(signal, name):  # a terminal's Ctrl-C or hang-up is the supervisor's to handle
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    out.write(b"ready\n")
    out.flush()
    out.close()
    groups: set[int] = set()
    for line in stream:
        word = line.strip()
        if word == b"bye":
            return 0
        if word[:1] in (b"+", b"-") and word[1:].isdigit():
            (groups.add if word[:1] == b"+" else groups.discard)(int(word[1:]))
    for group in groups:  # the supervisor is gone: take its engines with it
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return 0


class Watchdog:
    """The supervisor's end of the pipe."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.broken = ""
        if os.name != "posix":  # pragma: no cover - Windows: no process groups to kill
            self.broken = "not available on this platform"
            return
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-E", os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT)
        said = self.proc.stdout.readline() if ready else b""
        self.proc.stdout.close()
        if said != b"ready\n":
            self.broken = f"the watchdog process did not start within {READY_TIMEOUT:g}s"

    def watch(self, group: int) -> None:
        self._say(f"+{group}")

    def forget(self, group: int) -> None:
        self._say(f"-{group}")

    def close(self) -> None:
        """A clean shutdown: tell it so, and reap it."""
        if self.proc is None:
            return
        self._say("bye")
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - it exits on bye
            self.proc.kill()
            self.proc.wait()

    def _say(self, line: str) -> None:
        if self.proc is None or self.proc.stdin is None or self.broken:
            return
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:  # it was killed: keep supervising without it
            self.broken = f"the watchdog process died ({exc.strerror or exc})"


if __name__ == "__main__":
    sys.exit(main(sys.stdin.buffer, sys.stdout.buffer))
