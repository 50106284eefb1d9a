"""The process seam: what the fleet asks of the operating system, and nothing more.

The fleet (fleet.py) decides; this module does: start a process (its output and
its exit reach the loop's inbox as messages naming its `Proc`), signal its
process group, and on the way out kill and reap what is left. Tests give the
fleet a fake with the same four methods (tests/unit/test_fleet.py), so every
restart, backoff, heartbeat and stop-timeout decision is tested without a process.

POSIX: each engine leads its own session and process group, and signals go to
the whole group (grandchildren included). Windows has no process groups to
signal: the engine gets CREATE_NEW_PROCESS_GROUP, its stop is CTRL_BREAK_EVENT
and its kill TerminateProcess, and grandchildren are not reached (README, "Platforms").
"""

from __future__ import annotations

import signal
import subprocess
from typing import Mapping, Sequence

from bus.process import POSIX, STREAMS, Inbox, helper_thread, own_group, read_lines, signal_group, wait_exit

from .children import Proc
from .files import give_back
from .pump import Pump
from .watchdog import Watchdog


class Processes:
    """The real seam (children.ProcessSeam): subprocess, the pump (or reader threads), the watchdog."""

    def __init__(self, inbox: Inbox, max_line: int, watchdog: Watchdog | None) -> None:
        self.inbox, self.max_line, self.watchdog = inbox, max_line, watchdog
        self._popen: dict[int, subprocess.Popen[bytes]] = {}
        self.pump = Pump(inbox, max_line) if POSIX else None  # one thread reads every engine's output

    def spawn(self, owner: str, command: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> Proc:
        popen = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 cwd=cwd, env=dict(env), close_fds=True, **own_group())
        proc = Proc(popen.pid, owner)
        self._popen[popen.pid] = popen
        give_back(popen.pid)  # the open-files limit we started with, not our raised one
        if self.watchdog is not None:
            self.watchdog.watch(popen.pid)
        if self.pump is not None:
            self.pump.add(proc, popen)
        else:  # pragma: no cover - Windows: a reader thread per pipe, and a waiter
            for name, pipe in zip(STREAMS, (popen.stdout, popen.stderr)):
                helper_thread(f"{owner}-{name}", read_lines, proc, name, pipe, self.inbox, self.max_line)
            helper_thread(f"{owner}-wait", wait_exit, proc, popen, self.inbox)
        return proc

    def terminate(self, pid: int, signame: str) -> bool:
        if POSIX:
            return signal_group(pid, getattr(signal, signame))
        popen = self._popen.get(pid)  # pragma: no cover - Windows
        if popen is None or popen.returncode is not None:
            return False
        popen.send_signal(signal.CTRL_BREAK_EVENT)  # reaches its new process group: SIGBREAK in Python
        return True

    def kill(self, pid: int) -> bool:
        if POSIX:
            return signal_group(pid, signal.SIGKILL)
        popen = self._popen.get(pid)  # pragma: no cover - Windows
        if popen is None or popen.returncode is not None:
            return False
        popen.kill()
        return True

    def forget(self, pid: int) -> None:
        self._popen.pop(pid, None)
        if self.watchdog is not None:
            self.watchdog.forget(pid)

    def kill_all(self, wait: float) -> None:
        """Last resort on the way out: kill every process not yet reaped, and reap it.
        Only groups known to be ours are signalled: the group id of an engine
        reaped long ago may belong to an unrelated process by now."""
        for pid, popen in self._popen.items():
            if popen.returncode is None:
                self.kill(pid)
        for popen in self._popen.values():
            try:
                popen.wait(timeout=wait)
            except Exception:  # noqa: BLE001 - it survived SIGKILL (uninterruptible sleep): nothing more to do
                pass

    def close(self) -> None:
        """After kill_all: stop reading."""
        if self.pump is not None:
            self.pump.stop()
            self.pump = None

