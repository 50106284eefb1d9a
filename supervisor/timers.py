"""The fleet's clock work: a heap of each engine's next due time, and what is watched when (pure).

Each engine has one entry that counts: `Timers.armed`, the earliest time the heap
holds for it. Arming an earlier time pushes a new entry; a later one waits until
the earlier entry is popped (the fleet then arms the engine again), so a tick
costs what is due, not the number of engines.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Iterator

from .children import Child
from .config import EngineSpec
from .lifecycle import State

STARTED_AFTER = 1.0  # an engine up this long (or that said hello) is running
KILL_WAIT = 5.0      # after SIGKILL, stop waiting for an exit after this long
SDK_SETTINGS = ("heartbeat_timeout", "droppable")  # what only an engine using the SDK honours


class TimerHeap:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Child]] = []  # (when, tie-breaker, child)
        self._ties = itertools.count()

    def arm(self, child: Child, when: float | None) -> None:
        """Make sure the heap holds `when` for the child (unless an earlier time is there already)."""
        armed = child.timers.armed
        if when is not None and (armed is None or when < armed):
            child.timers.armed = when
            heapq.heappush(self._heap, (when, next(self._ties), child))

    def due(self, now: float) -> Iterator[Child]:
        """The children with a time due by `now`, earliest first (also those armed while this runs)."""
        while self._heap and self._heap[0][0] <= now:
            _, _, child = heapq.heappop(self._heap)
            child.timers.armed = None
            yield child

    def next(self) -> float | None:
        return self._heap[0][0] if self._heap else None


def heartbeat_watched(child: Child) -> bool:
    heard = child.hello or child.remote  # a remote engine is watched from its (or its launcher's) hello on
    return child.state is State.RUNNING and heard and child.spec.heartbeat_timeout > 0 and child.exit is None


def quiet_watched(child: Child) -> bool:
    return child.state is State.RUNNING and child.spec.idle_timeout > 0 and child.exit is None


def sdk_settings(spec: EngineSpec) -> list[str]:
    """The settings only the SDK honours that this engine's config gave."""
    return [key for key in SDK_SETTINGS if key in spec.explicit]


def hello_wait(spec: EngineSpec) -> float:
    """How long after its start an engine that says no hello is taken for one without the SDK."""
    return spec.heartbeat_timeout or STARTED_AFTER * 10
