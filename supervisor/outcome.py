"""What a run ends with: the exit code, and the words for an engine that could not start."""

from __future__ import annotations

import os
from enum import Enum
from typing import Iterable

from bus import exitcodes

from .children import Child


class Cause(str, Enum):
    """Why a run stops (the exit code follows from it, never from the words of its reason)."""

    SIGNAL = "signal"        # SIGINT, SIGTERM, SIGHUP
    DOWN = "down"            # a `down` request (bus down): the run ends 0
    REQUEST = "request"      # a stop the program running the supervisor asked for (Supervisor.stop): the engines' codes count
    STOP_ALL = "stop-all"    # an engine with on_exit = stop-all ended
    DONE = "done"            # every engine ended by itself

    def __str__(self) -> str:
        return self.value


def run_exit_code(children: Iterable[Child], *, stop_signal: int | None, cause: Cause | None, decider: Child | None) -> int:
    """Signal -> 128+N; `bus down` -> 0; `bus run` -> its engine's code; else 0 if all exited 0, 1 if not."""
    if stop_signal is not None:
        return exitcodes.from_signal(stop_signal)
    if cause is Cause.DOWN:
        return exitcodes.OK
    if decider is not None:
        return child_code(decider)
    return exitcodes.OK if all(child_code(c) == 0 for c in children) else exitcodes.ENGINE_FAILED


def child_code(child: Child) -> int:
    """An engine's part in the run's exit code: its exit code; 0 if we stopped it."""
    if child.spawn_error:
        return exitcodes.COMMAND_NOT_FOUND if "not found" in child.spawn_error else exitcodes.CANNOT_START
    if child.stopped_by_us:
        return exitcodes.OK
    if child.exit is None:  # never ran (stopped before it started), or still unknown
        return exitcodes.OK if child.pid is None else exitcodes.ENGINE_FAILED
    if child.exit.signal is not None:
        return exitcodes.from_signal(child.exit.signal)
    return child.exit.code or 0


def spawn_error(child: Child, exc: OSError | ValueError) -> str:
    program = child.spec.command[0]
    if isinstance(exc, ValueError):
        return f"cannot start {child.name!r}: {exc} (in its command or environment)"
    if isinstance(exc, FileNotFoundError):
        if child.spec.cwd is not None and not os.path.isdir(child.spec.cwd):
            return f"cannot start {child.name!r}: working directory {child.spec.cwd} does not exist"
        return f"cannot start {child.name!r}: command not found: {program}"
    if isinstance(exc, PermissionError):
        return f"cannot start {child.name!r}: {program} is not executable (permission denied)"
    return f"cannot start {child.name!r}: {program}: {exc.strerror or exc}"
