"""A supervisor of an application's own: a `bus up --keep` child process, gone with it.

The application (bus.app, bus.aio) starts `bus up --keep --quiet --host-pipe`
(this Python, with bus put on its sys.path by LAUNCH, not PYTHONPATH, which
engines would inherit) in a private session with its settings, and keeps the write end
of the child's stdin. Nobody ever writes to it: when the application exits,
crashes or is SIGKILLed, the OS closes it, the supervisor reads its end
(Supervisor.watch_host), stops its engines and SIGKILLs them a second later.
The supervisor is a separate process (its own session on POSIX, its own
process group on Windows): the host's signals, GIL and crashes stay the
host's, and a Ctrl-C in the host's terminal reaches only the host, which then
closes the bus (the engines get their stop timeout).

A private session's run directory is removed once the supervisor has
exited (not after a SIGKILL of the host: then it stays, a few empty sockets).

What the supervisor says on stderr goes to the `bus` logger, line by line; if
it cannot start, its last line is the error raised.

Windows: no sessions; CREATE_NEW_PROCESS_GROUP keeps the console's Ctrl-C
from it, and the pipe works the same. A process the host forked without exec
(multiprocessing's fork) holds the pipe too, and keeps the supervisor up
until it exits.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from .errors import BusError
from .runtime import HAS_IPC, INFO_POLL, live_info, local_session

log = logging.getLogger("bus")

LAUNCH = "import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'bus'; from bus.cli import main; main()"
START_TIMEOUT = 15.0  # seconds for a private supervisor to answer its first hello
EXTRA_WAIT = 5.0      # beyond the stop timeout, for the supervisor to exit after `down`


def private_session() -> str:
    """A session name of this process's own (up to 32 characters, as SESSION_NAME allows)."""
    return f"app-{os.getpid()}-{secrets.token_hex(4)}"


class HostedSupervisor:
    """The child process; `ready` and `close` are the caller's to drive (sync here, async in bus.aio)."""

    def __init__(self, config: str | Path | None, session: str | None, settings: dict[str, Any], *,
                 keys: str | Path | None = None, listen: str | None = None, insecure: bool = False) -> None:
        self.private = session is None  # a session of its own: its run directory goes when it ends
        self.session = session or private_session()
        session = self.session
        stop_timeout = settings.get("stop_timeout", 10.0)
        self.stop_timeout = float(stop_timeout) if isinstance(stop_timeout, (int, float)) else 10.0  # (a bad one: the child says so)
        # bus as this program found it (a source checkout too), without PYTHONPATH: engines inherit the environment
        argv = [sys.executable, "-c", LAUNCH, str(Path(__file__).resolve().parent.parent), "up"]
        if config is not None:
            argv.append(os.fspath(config))
        argv += ["--keep", "--quiet", "--host-pipe", "--session", session, "--settings", json.dumps(settings)]
        if keys is not None:
            argv += ["--keys", os.fspath(keys)]
        if listen is not None:
            argv += ["--listen", listen]
        if insecure:
            argv.append("--insecure")
        apart: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True, **apart)
        self.said: deque[str] = deque(maxlen=20)
        self._reader = threading.Thread(target=self._relay_stderr, name=f"bus-{session}-stderr", daemon=True)
        self._reader.start()

    def _relay_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.said.append(line)
                log.warning("%s", line)

    def failure(self) -> str | None:
        """Why it is not running (it exited), or None while it runs."""
        code = self.proc.poll()
        if code is None:
            return None
        self._reader.join(timeout=1.0)  # its last words are in
        last = self.said[-1].removeprefix("bus: ") if self.said else f"it exited with code {code}"
        return f"the private supervisor (session {self.session!r}) did not start: {last}"

    def check_start(self, began: float) -> None:
        """BusError in one line if it exited, or has not answered START_TIMEOUT after `began`."""
        failed = self.failure()
        if failed:
            raise BusError(failed)
        if time.monotonic() > began + START_TIMEOUT:
            raise BusError(f"the private supervisor (session {self.session!r}) did not answer within {START_TIMEOUT:g}s")

    def wait_endpoints(self) -> None:
        """Without ipc (Windows, BUS_LOCAL_TCP=1) its endpoints are known once it has written
        supervisor.json: wait for that (BusError in one line if it fails to start first)."""
        if HAS_IPC:
            return
        began, session = time.monotonic(), local_session(self.session)
        while True:
            info = live_info(session)
            if info is not None and info.get("pid") == self.proc.pid:
                return
            self.check_start(began)
            time.sleep(INFO_POLL)

    def answered(self, hello: dict[str, Any]) -> bool:
        """A hello is from this supervisor (not from another one already in the session)."""
        return hello.get("pid") == self.proc.pid

    def let_go(self) -> None:
        """Close our end of the pipe: it stops at once (HOST_GRACE for its engines)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def reap(self, timeout: float) -> None:
        """Wait for it to exit; closing the pipe after `timeout`, killing it after more. Never hangs."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.let_go()
            try:
                self.proc.wait(timeout=EXTRA_WAIT)
            except subprocess.TimeoutExpired:  # its watchdog takes the engines with it
                log.warning("bus: the private supervisor (session %r) did not exit: killed", self.session)
                self.proc.kill()
                self.proc.wait()
        self.let_go()
        self._reader.join(timeout=1.0)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if self.private:  # (sockets, lock, spool: nothing anyone will look for again)
            shutil.rmtree(local_session(self.session).dir, ignore_errors=True)

    def takes_up_to(self, stop_timeout: Any) -> None:
        """An engine was spawned with its own stop timeout: closing waits for the longest."""
        if isinstance(stop_timeout, (int, float)) and stop_timeout > self.stop_timeout:
            self.stop_timeout = float(stop_timeout)

    @property
    def close_wait(self) -> float:
        """How long `down` may take: the stop timeout, and a margin to exit."""
        return self.stop_timeout + EXTRA_WAIT
