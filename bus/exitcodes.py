"""Exit codes of the `bus` commands, in one table (README, "Exit codes")."""

from __future__ import annotations

OK = 0                # everything ran and every engine exited 0
ENGINE_FAILED = 1     # an engine failed (bus up), or events were lost (bus tail)
USAGE = 2             # bad command line (click's own code)
CANNOT_START = 3      # bad config, session busy, address in use, cannot spawn
NOT_RUNNING = 4       # no supervisor answered (bus status, bus down)
DENIED = 5            # the supervisor refused our key, or the request needs an admin key
COMMAND_NOT_FOUND = 127  # bus run: the command does not exist
INTERRUPTED = 130     # Ctrl-C (SIGINT)
TERMINATED = 143      # SIGTERM


def from_signal(signum: int) -> int:
    """The shell convention: a process killed by signal N reports 128 + N."""
    return 128 + signum
