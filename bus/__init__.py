"""bus: a ZeroMQ message bus that runs worker processes and streams what they do.

    from bus import Subscriber
    for event in Subscriber():
        print(event.kind, event.engine)

`AsyncSubscriber` is the same for asyncio; `Replay` replays a run that is over.
`Bus` and `AsyncBus` (bus/app.py, bus/aio.py) start engines from an application.
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING, Any

from ._version import __version__

# The repo keeps engine/ and supervisor/ beside bus/ (the owner's layout); installed,
# they are bus/engine and bus/supervisor. Run from a source checkout (PYTHONPATH, or an
# editable install), bus.engine and bus.supervisor are found beside this folder.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "engine")) and _os.path.isfile(_os.path.join(_root, "engine", "sdk.py")):
    __path__.append(_root)

# The client side loads when first named: `import bus.engine` in an engine process
# must not pay for asyncio, sqlite3 and the subscriber (tests/unit/test_layers.py).
_LAZY = {
    "BusError": "errors", "NotRunning": "errors",
    "Replay": "replay",
    "AsyncSubscriber": "subscriber", "Subscriber": "subscriber",
    "Bus": "app", "Ended": "app", "Handle": "app",
    "AsyncBus": "aio", "AsyncHandle": "aio",
    "JobDead": "work_client", "JobTimeout": "work_client", "QueueFull": "work_client",
}
_EVENTS = (
    "AnyEvent", "EngineBye", "EngineError", "EngineExited", "EngineHello", "EngineState", "Event", "Finding",
    "Heartbeat", "Log", "PhaseCompleted", "PhaseFailed", "PhaseStarted", "Progress", "Result", "Screenshot",
    "SupervisorStarted", "SupervisorStopped", "UnknownEvent",
)
_LAZY.update({name: "protocol" for name in _EVENTS})

if TYPE_CHECKING:
    from .aio import AsyncBus, AsyncHandle
    from .app import Bus, Ended, Handle
    from .errors import BusError, NotRunning
    from .work_client import JobDead, JobTimeout, QueueFull
    from .protocol import (
        AnyEvent, EngineBye, EngineError, EngineExited, EngineHello, EngineState, Event, Finding, Heartbeat, Log,
        PhaseCompleted, PhaseFailed, PhaseStarted, Progress, Result, Screenshot, SupervisorStarted, SupervisorStopped,
        UnknownEvent,
    )
    from .replay import Replay
    from .subscriber import AsyncSubscriber, Subscriber


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bus' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "__version__",
    "AnyEvent", "AsyncBus", "AsyncHandle", "AsyncSubscriber", "Bus", "BusError", "Ended", "Handle", "EngineBye", "EngineError", "EngineExited", "EngineHello", "EngineState",
    "Event", "Finding", "Heartbeat", "JobDead", "JobTimeout", "Log", "NotRunning", "QueueFull", "PhaseCompleted", "PhaseFailed", "PhaseStarted", "Progress",
    "Replay", "Result", "Screenshot", "Subscriber", "SupervisorStarted", "SupervisorStopped", "UnknownEvent",
]
