"""bus: a ZeroMQ message bus that runs worker processes and streams what they do.

    from bus import Subscriber
    for event in Subscriber():
        print(event.kind, event.engine)

`AsyncSubscriber` is the same for asyncio; `Replay` replays a run that is over.
"""

from __future__ import annotations

from ._version import __version__
from .errors import BusError, NotRunning
from .protocol import (
    AnyEvent,
    EngineBye,
    EngineError,
    EngineExited,
    EngineHello,
    EngineState,
    Event,
    Finding,
    Heartbeat,
    Log,
    PhaseCompleted,
    PhaseFailed,
    PhaseStarted,
    Progress,
    Result,
    Screenshot,
    SupervisorStarted,
    SupervisorStopped,
    UnknownEvent,
)
from .replay import Replay
from .subscriber import AsyncSubscriber, Subscriber

__all__ = [
    "__version__",
    "AnyEvent",
    "AsyncSubscriber",
    "BusError",
    "EngineBye",
    "EngineError",
    "EngineExited",
    "EngineHello",
    "EngineState",
    "Event",
    "Finding",
    "Heartbeat",
    "Log",
    "NotRunning",
    "PhaseCompleted",
    "PhaseFailed",
    "PhaseStarted",
    "Progress",
    "Replay",
    "Result",
    "Screenshot",
    "Subscriber",
    "SupervisorStarted",
    "SupervisorStopped",
    "UnknownEvent",
]
