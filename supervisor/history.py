"""In-memory history: the last published events, bounded by count and bytes.

Entries keep the frames exactly as published (`[header, *blobs]`, blobs as the
zmq frames they arrived in, not copies), so answering a history request costs
no re-encoding. Global sequence numbers are contiguous, so an entry is found
by arithmetic on `gseq`, not by search.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Iterable

from bus.journal import Entry, cut_page


class History:
    def __init__(self, max_events: int, max_bytes: int) -> None:
        self._entries: deque[Entry] = deque()
        self._max_events = max(1, max_events)
        self._max_bytes = max_bytes
        self.bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def first(self) -> int:
        """gseq of the oldest entry held (0 if empty)."""
        return self._entries[0].gseq if self._entries else 0

    def append(self, entry: Entry) -> None:
        self._entries.append(entry)
        self.bytes += entry.size
        while len(self._entries) > 1 and (
            len(self._entries) > self._max_events or self.bytes > self._max_bytes
        ):
            old = self._entries.popleft()
            self.bytes -= old.size
            self.evicted += 1

    def select(
        self,
        *,
        after: int = 0,
        until: int | None = None,
        last: int | None = None,
        since: float | None = None,
        kinds: Iterable[str] | None = None,
        engines: Iterable[str] | None = None,
        limit: int = 1000,
        max_bytes: int = 32 * 1024 * 1024,
    ) -> tuple[list[Entry], bool]:
        """Entries with after < gseq <= until that match the filters, oldest first.

        `last=N` keeps only the newest N of those; `since` only those produced
        at or after that Unix time. Returns (entries, more):
        `more` is true when the reply was cut at `limit` entries or `max_bytes`;
        ask again with `after` = the last gseq received.
        """
        kind_set = set(kinds) if kinds is not None else None
        engine_set = set(engines) if engines is not None else None

        def wanted(e: Entry) -> bool:
            return (
                (kind_set is None or e.kind in kind_set)
                and (engine_set is None or e.engine in engine_set)
                and (since is None or e.ts >= since)
            )

        if not self._entries:
            return [], False
        top = self._entries[-1].gseq if until is None else min(until, self._entries[-1].gseq)
        start = max(0, after + 1 - self.first)
        stop = max(0, top + 1 - self.first)
        if last is not None:
            picked = []
            for entry in reversed(list(islice(self._entries, start, stop))):
                if len(picked) >= last:
                    break
                if wanted(entry):
                    picked.append(entry)
            picked.reverse()
            candidates: Iterable[Entry] = picked
        else:
            candidates = (e for e in islice(self._entries, start, stop) if wanted(e))
        return cut_page(candidates, lambda e: e.size, limit=limit, max_bytes=max_bytes)
