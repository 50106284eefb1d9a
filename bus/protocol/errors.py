"""The protocol's two error families (after h11).

`LocalProtocolError` means *our* side built something invalid (a bug, or bad
arguments given to the SDK): it raises. `RemoteProtocolError` means a peer sent
garbage: receivers count it, report it and drop the message, never crash.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class: something does not follow docs/PROTOCOL.md."""

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        # A short, stable token for counters ("bad-msgpack", "unknown-kind", ...).
        self.reason = reason


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked to build an invalid event."""


class RemoteProtocolError(ProtocolError):
    """A peer sent frames that are not a valid event."""
