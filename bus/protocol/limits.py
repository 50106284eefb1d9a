"""Size limits of the wire protocol, in one place so docs and checks agree."""

from __future__ import annotations

import re

PROTOCOL_VERSION = 1

MAX_NAME = 128            # engine names, phase names, screenshot names (characters)
MAX_TEXT = 64 * 1024      # messages, details, tracebacks (characters)
MAX_HEADER = 1024 * 1024  # one encoded header frame (bytes)
MAX_BLOB = 64 * 1024 * 1024  # one screenshot (bytes)
MAX_DEPTH = 8             # nesting of maps/lists inside finding/result data
MAX_ITEMS = 10_000        # elements in one map/list inside finding/result data

# Engine (and instance) names: letters, digits, '_', '.', '-'; no '/' because the
# topic uses it as separator.
ENGINE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
MIME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+\-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+\-]*")

# The integers msgpack carries: int64 and uint64.
INT_MIN, INT_END = -(2**63), 2**64

# A batch: one frame holding several header-only events (a msgpack array of their maps).
MAX_BATCH = 1024          # events in one batch frame
MAX_BATCH_BYTES = 64 * 1024  # what the SDK puts in one batch frame (a receiver takes up to MAX_HEADER)
