"""Errors a user can cause: printed as one line (what, where, how to fix), never a traceback."""

from __future__ import annotations

from . import exitcodes


class BusError(Exception):
    exit_code = exitcodes.CANNOT_START


class NotRunning(BusError):
    """No supervisor answered at an address."""

    exit_code = exitcodes.NOT_RUNNING


class UsageError(BusError):
    """A bad argument on the command line."""

    exit_code = exitcodes.USAGE


class Denied(BusError):
    """The supervisor turned us away: our key is not admitted, or not for this."""

    exit_code = exitcodes.DENIED
