"""The protocol's two error families (after h11).

`LocalProtocolError` means *our* side built something invalid (a bug, or bad
arguments given to the SDK): it raises. `RemoteProtocolError` means a peer sent
garbage: receivers count it, report it and drop the message, never crash.
"""

from __future__ import annotations

# Why a message from an engine is rejected: the counters in `status` use these
# tokens, and docs/PROTOCOL.md lists each one.
ENGINE_REJECTS = (
    "no-frames", "too-large", "bad-msgpack", "bad-utf8", "not-a-map", "bad-version", "newer-version",
    "bad-kind", "unknown-kind", "reserved-kind", "missing-field", "bad-field", "bad-frames", "bad-batch", "unknown-engine",
    "name-taken", "too-many-engines",
    "unknown-job",  # a job.end for a job that is not running on that engine (it was queued again meanwhile, or never given)
    "internal-error",  # a bug of ours that a message reached: counted and said (a `bus` log), never fatal
)
# The `code` of a control error reply (docs/PROTOCOL.md, "Control"): its own codes, or the
# decoding reason of a request that could not be read.
CONTROL_ERRORS = (
    "bad-request", "unknown-op", "forbidden", "stopping", "unknown-engine", "remote", "unknown-run", "internal-error",
    "bad-engine", "name-taken", "too-many-engines", "not-ended",
    "unknown-queue", "queue-full", "unknown-job", "bad-job",
)
OTHER_REASONS = ("bad-marker", "bad-reply", *CONTROL_ERRORS)


class ProtocolError(Exception):
    """Base class: something does not follow docs/PROTOCOL.md."""

    def __init__(self, message: str, *, reason: str = "bad-field") -> None:
        if reason not in ENGINE_REJECTS and reason not in OTHER_REASONS:
            raise ValueError(f"undeclared protocol error reason {reason!r}")
        super().__init__(message)
        self.reason = reason  # a short, stable token for counters


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked to build an invalid event."""


class RemoteProtocolError(ProtocolError):
    """A peer sent frames that are not a valid event."""
