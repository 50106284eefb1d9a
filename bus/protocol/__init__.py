"""The bus wire protocol: events, their encoding, validation. No I/O here."""

from __future__ import annotations

from .codec import decode, decode_published, encode, encode_published, jsonable, split_batch, topic, topic_of
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import (
    DROPPABLE_KINDS,
    MAY_BE_DROPPED,
    ENGINE_KINDS,
    KINDS,
    LEVELS,
    AnyEvent,
    EngineBye,
    EngineError,
    EngineExited,
    EngineHello,
    EngineState,
    Event,
    Finding,
    Heartbeat,
    JobDead,
    JobDone,
    JobEnd,
    JobFailed,
    JobQueued,
    JobRetried,
    JobStarted,
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
    Upstream,
    Welcome,
)
from .limits import PROTOCOL_VERSION

__all__ = [name for name in dir() if not name.startswith("_")]
