"""Every event kind of the bus, as a frozen dataclass validated on construction.

How it works: each class is registered with `@kind(...)`, which records its wire
name, who may send it (an engine through the SDK, or only the supervisor) and
whether an engine may drop it under pressure, and compiles one checker per
field from the type hints (see fields.py). `__post_init__` runs the checkers,
then the class's own cross-field `_validate`, so an invalid event cannot exist:
building one raises `LocalProtocolError` naming the kind, the field and what was
wrong. The `doc` of each field is what docs/PROTOCOL.md shows.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

from .errors import LocalProtocolError
from .fields import (
    Blob,
    Checker,
    Counts,
    Data,
    EngineName,
    Label,
    Mime,
    Number,
    RequiredLabel,
    Text,
    JobId,
    compile_checker,
    is_blob,
)

Level = Literal["debug", "info", "warning", "error", "critical"]
Stream = Literal["engine", "stdout", "stderr", "bus"]
LEVELS: tuple[str, ...] = typing.get_args(Level)


def doc(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    return field(default=default, default_factory=factory, metadata={"doc": text})


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event has; `gseq` is set by the supervisor when it publishes."""

    KIND: ClassVar[str] = ""
    ORIGIN: ClassVar[str] = "engine"  # "engine": engines may send it; "supervisor": only it
    DROPPABLE: ClassVar[bool] = False  # may an engine drop it when its queue is full?
    CHECKS: ClassVar[tuple[tuple[str, Checker], ...]] = ()
    HEADER_FIELDS: ClassVar[tuple[str, ...]] = ()
    BLOB_FIELDS: ClassVar[tuple[str, ...]] = ()
    FIELD_NAMES: ClassVar[tuple[str, ...]] = ()

    engine: EngineName = doc("engine (instance) name; empty for supervisor-wide events", "")
    seq: int | None = doc("the engine's own sequence number (1, 2, ...); nil if the supervisor made the event", None)
    ts: float = doc("when the event was produced, Unix time in seconds", factory=time.time)
    gseq: int | None = doc("global sequence number stamped by the supervisor (1, 2, ...); absent from engine to supervisor", None)
    origin: EngineName | None = doc("set by a hub (`bus hub`): the label of the supervisor it relayed the event from; absent otherwise", None)
    origin_gseq: int | None = doc("set by a hub: the event's `gseq` at its origin (in that supervisor's current run, see `upstream`)", None)
    job: JobId | None = doc("the job (work queues, section 10) this event belongs to: the SDK sets it on what an engine sends while it runs one; "
                            "every `job.*` event has it", None)

    def __post_init__(self) -> None:
        for name, check in type(self).CHECKS:
            value = getattr(self, name)
            checked = check(value)
            if checked is not value:
                object.__setattr__(self, name, checked)
        self._validate()

    def _validate(self) -> None:
        """Cross-field rules; subclasses override."""

    @property
    def kind(self) -> str:
        return self.KIND

    def fields(self) -> dict[str, Any]:
        """The kind's own fields (not the common ones), blobs included."""
        return {name: getattr(self, name) for name in self.HEADER_FIELDS + self.BLOB_FIELDS}

    def stamped(self, gseq: int) -> Event:
        """A copy numbered `gseq`. Skips re-validation: only gseq changes."""
        cls = type(self)
        numbered = object.__new__(cls)
        for name in cls.FIELD_NAMES:
            object.__setattr__(numbered, name, getattr(self, name))
        object.__setattr__(numbered, "gseq", gseq)
        return numbered


COMMON_FIELDS = ("engine", "seq", "ts", "gseq", "origin", "origin_gseq", "job")
KINDS: dict[str, type[Event]] = {}


def kind(name: str, *, origin: str = "engine", droppable: bool = False) -> Callable[[type], type]:
    def register(cls: type) -> type:
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = dataclasses.fields(cls)
        cls.KIND = name
        cls.ORIGIN = origin
        cls.DROPPABLE = droppable
        cls.CHECKS = tuple((f.name, compile_checker(hints[f.name], f"{name}.{f.name}")) for f in fields)
        own = [f.name for f in fields if f.name not in COMMON_FIELDS]
        cls.BLOB_FIELDS = tuple(n for n in own if is_blob(hints[n]))
        cls.HEADER_FIELDS = tuple(n for n in own if n not in cls.BLOB_FIELDS)
        cls.FIELD_NAMES = tuple(f.name for f in fields)
        KINDS[name] = cls
        return cls

    return register


def _bad(kind_name: str, message: str) -> LocalProtocolError:
    return LocalProtocolError(f"{kind_name}: {message}", reason="bad-field")


@kind("hello")
@dataclass(frozen=True, slots=True, kw_only=True)
class EngineHello(Event):
    """First event of an engine process: who it is."""

    pid: int = doc("process id of the engine")
    sdk: Label = doc('name/version of the SDK, e.g. "bus-py/0.1.0"', "")
    host: Label = doc("host name the engine runs on", "")
    heartbeat: float | None = doc(
        "seconds between this process's heartbeats, if it sends them; for a remote engine (one the supervisor did "
        "not start) the supervisor reports it `lost` after three times as long without a message from it", None)

    def _validate(self) -> None:
        if self.heartbeat is not None and not 0 < self.heartbeat <= 86400:
            raise _bad(self.KIND, f"heartbeat must be between 0 and 86400 seconds, got {self.heartbeat}")


@kind("heartbeat", droppable=True)
@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Event):
    """The engine is alive (sent periodically by the SDK when asked to, and soon
    after it had to drop events, so the drops show in status while it runs)."""

    dropped: int = doc("events this engine process has dropped so far because its queue was full", 0)
    dropped_kinds: Counts = doc("the same by kind, e.g. {\"log\": 211, \"progress\": 3} (empty: none, or an SDK that does not say)", factory=dict)
    idle: float = doc("seconds its work has been still: its main thread used no CPU, sent nothing, and is in no declared wait "
                      "(0: it works, or the SDK does not say); the supervisor counts an engine still for its heartbeat_timeout as unresponsive", 0.0)

    def _validate(self) -> None:
        if not 0 <= self.idle <= 10**9:
            raise _bad(self.KIND, f"idle must be between 0 and 1e9 seconds, got {self.idle}")


@kind("phase.start")
@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseStarted(Event):
    """A named phase of the engine's work begins."""

    phase: RequiredLabel = doc("phase name")
    detail: Text = doc("free text", "")


@kind("phase.done")
@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseCompleted(Event):
    """A phase finished successfully."""

    phase: RequiredLabel = doc("phase name")
    elapsed: float | None = doc("seconds since the phase started, if known", None)
    detail: Text = doc("free text", "")


@kind("phase.error")
@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseFailed(Event):
    """A phase failed."""

    phase: RequiredLabel = doc("phase name")
    message: Text = doc("what went wrong")


@kind("progress", droppable=True)
@dataclass(frozen=True, slots=True, kw_only=True)
class Progress(Event):
    """How far the engine is. Give done/total, or pct, or neither (busy, unknown extent)."""

    phase: Label = doc("phase this progress belongs to; empty if none", "")
    done: Number | None = doc("units done (>= 0)", None)
    total: Number | None = doc("units in all (>= 0), if known", None)
    pct: float | None = doc("percent 0..100 (outside it: rejected, `bad-field`); when absent, min(100, 100 * done / total) "
                            "if done is given and total is above 0 (not rounded), else nil: total 0 or nil is an unknown extent", None)
    detail: Text = doc("free text, e.g. the item being worked on", "")

    def _validate(self) -> None:
        if self.done is not None and self.done < 0:
            raise _bad(self.KIND, f"done must be >= 0, got {self.done}")
        if self.total is not None and self.total < 0:
            raise _bad(self.KIND, f"total must be >= 0, got {self.total}")
        if self.pct is None:
            if self.done is not None and self.total:
                object.__setattr__(self, "pct", min(100.0, 100.0 * self.done / self.total))
        elif not 0.0 <= self.pct <= 100.0:
            raise _bad(self.KIND, f"pct must be between 0 and 100, got {self.pct}")


@kind("log")
@dataclass(frozen=True, slots=True, kw_only=True)
class Log(Event):
    """A log line: from the SDK (stream "engine"), captured from stdout/stderr, or a
    note the supervisor writes about the engine (stream "bus", e.g. lost events)."""

    message: Text = doc("the line, without its newline")
    level: Level = doc("severity", "info")
    stream: Stream = doc("where the line came from", "engine")


@kind("screenshot", droppable=True)
@dataclass(frozen=True, slots=True, kw_only=True)
class Screenshot(Event):
    """An image; its bytes travel as one raw frame after the header."""

    name: RequiredLabel = doc('file-like name, e.g. "home.png"')
    mime: Mime = doc("media type of the bytes", "image/png")
    size: int = doc("length of the raw frame in bytes (must match)")
    data: Blob = doc("the image bytes (frame 1 after the header)")

    def _validate(self) -> None:
        if self.size != len(self.data):
            raise _bad(self.KIND, f"size says {self.size} bytes but the data has {len(self.data)}")


@kind("finding")
@dataclass(frozen=True, slots=True, kw_only=True)
class Finding(Event):
    """Something the engine found; free-form."""

    data: Data = doc("free-form map (string keys; nil, bool, int, float, str, bin, array, map values)")


@kind("result")
@dataclass(frozen=True, slots=True, kw_only=True)
class Result(Event):
    """The engine's final summary."""

    summary: Data = doc("free-form map, as for finding")


@kind("error")
@dataclass(frozen=True, slots=True, kw_only=True)
class EngineError(Event):
    """An error the engine reports (fatal ones usually precede its exit)."""

    message: Text = doc("what went wrong")
    type: Label = doc('error class, e.g. "ValueError"', "")
    traceback: Text = doc("stack trace, if any", "")
    fatal: bool = doc("the engine is giving up", False)


@kind("bye")
@dataclass(frozen=True, slots=True, kw_only=True)
class EngineBye(Event):
    """Last event of an engine process: everything before it has been sent."""

    sent: int = doc("events this engine process sent before bye (hello included)")
    dropped: int = doc("events it dropped because its queue was full", 0)
    dropped_kinds: Counts = doc("the same by kind (empty: none, or an SDK that does not say)", factory=dict)


@kind("state", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class EngineState(Event):
    """The supervisor moved an engine to a new lifecycle state."""

    state: Label = doc("new state: pending, starting, running, unresponsive, stopping, backoff, exited, fatal, lost (a remote engine not heard from within its heartbeat timeout)")
    prev: Label = doc("previous state; empty for the first", "")
    pid: int | None = doc("process id, if there is a process", None)
    reason: Text = doc("why, in words", "")
    restarts: int = doc("restarts of this instance so far", 0)
    delay: float | None = doc("backoff: seconds until the restart", None)
    cause: Label = doc("what moved it, for code to act on (section 6, \"State causes\"); empty from supervisors before 0.2", "")
    ended: Text = doc("exited, backoff, fatal: how its process ended, in words (\"exit code 1\", \"killed by SIGKILL\")", "")
    remote: bool = doc("a remote engine: one the supervisor did not start and cannot signal", False)


@kind("exit", origin="launcher")
@dataclass(frozen=True, slots=True, kw_only=True)
class EngineExited(Event):
    """An engine process ended; published after its last events and output lines."""

    pid: int = doc("process id it had")
    code: int | None = doc("exit status if it exited; nil if a signal killed it", None)
    signal: int | None = doc("number of the signal that killed it, else nil", None)
    signame: Label = doc('name of that signal, e.g. "SIGKILL"; empty if none', "")
    runtime: float = doc("seconds it ran", 0.0)

    def _validate(self) -> None:
        if (self.code is None) == (self.signal is None):
            raise _bad(self.KIND, "exactly one of code and signal must be set")


@kind("sup.start", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorStarted(Event):
    """First event of a supervisor run."""

    run: Label = doc("unique id of this supervisor run")
    pid: int = doc("supervisor process id")
    version: Label = doc("bus package version", "")
    engines: list[EngineName] = doc("names of the engines it will run", factory=list)


@kind("sup.stop", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorStopped(Event):
    """Last event of a supervisor run: nothing follows."""

    code: int = doc("exit code the supervisor ends with")
    reason: Text = doc("why it stopped", "")


@kind("welcome", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome(Event):
    """Answer to a new subscription, published on the subscription's own prefix.

    Not numbered (no gseq) and not kept in history: it tells a subscriber that
    its subscription is active and which event was the newest at that moment.
    """

    run: Label = doc("unique id of this supervisor run")
    last: int = doc("gseq of the newest event published so far; 0 if none")


@kind("upstream", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream(Event):
    """A hub (`bus hub`) tells what happens to a supervisor it follows (`origin`).

    `started` and `stopped` stand for that supervisor's own `sup.start` and
    `sup.stop` (with their `origin_gseq`): a hub never relays those, so
    `sup.stop` still means the end of the run you follow. `following` and
    `lost` are the hub's own view: it hears the supervisor, or it does not
    (then it keeps trying, and fills the gap from the supervisor's history
    when it answers again)."""

    state: Label = doc("started, stopped, following, lost, or cut (its run ended without `sup.stop` for the hub: that supervisor went away, and a new run of it follows)")
    address: Label = doc("where the hub reaches that supervisor (its control address)", "")
    run: Label = doc("started, stopped: the supervisor's run id", "")
    pid: int | None = doc("started: the supervisor's process id", None)
    version: Label = doc("started: its bus version", "")
    engines: list[EngineName] = doc("started: the engines it will run", factory=list)
    code: int | None = doc("stopped: the supervisor's exit code", None)
    reason: Text = doc("why, in words", "")


@kind("job.end")
@dataclass(frozen=True, slots=True, kw_only=True)
class JobEnd(Event):
    """An engine ends the job it was given (`job`): done with a result, or failed. The
    supervisor does not publish it as is: it publishes `job.done`, `job.failed` or
    `job.dead` in its place (section 10)."""

    ok: bool = doc("true: done; false: failed")
    result: Data = doc("done: what it produced, a free-form map as for finding", factory=dict)
    error: Text = doc("failed: what went wrong", "")
    retry: bool = doc("failed: may it be tried again (while attempts are left)? false makes it `dead` at once", True)
    started: bool = doc("false: handed back unstarted (given in one take with others, and the engine's loop ended before its turn): queued again first, the attempt not counted", True)

    def _validate(self) -> None:
        _needs_job(self)


class _JobEvent(Event):
    """What every job.* event of the supervisor has."""

    __slots__ = ()

    def _validate(self) -> None:
        _needs_job(self)


def _needs_job(event: Event) -> None:
    if not event.job:
        raise _bad(event.KIND, "job (the job's id) is required")


@kind("job.queued", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueued(_JobEvent):
    """A job joined the end of its queue: submitted, or retried by hand."""

    queue: RequiredLabel = doc("the queue")
    payload: Data = doc("the job's input, a free-form map as for finding", factory=dict)
    attempt: int = doc("starts so far (0 when submitted; a retry by hand starts again from 0)", 0)
    cause: Text = doc('why, if not a submit: "retried by hand"', "")


@kind("job.started", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class JobStarted(_JobEvent):
    """A job was given to the instance `engine` (it had asked for work)."""

    queue: RequiredLabel = doc("the queue")
    attempt: int = doc("this start's number: 1 the first time")


@kind("job.done", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class JobDone(_JobEvent):
    """The instance `engine` finished the job."""

    queue: RequiredLabel = doc("the queue")
    attempt: int = doc("the start that finished it")
    result: Data = doc("what the engine's `job.end` said it produced", factory=dict)
    runtime: float = doc("seconds from its start to its end", 0.0)


@kind("job.failed", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed(_JobEvent):
    """The job failed on `engine` and is queued again (attempts are left); see `job.dead` for the last one."""

    queue: RequiredLabel = doc("the queue")
    attempt: int = doc("the start that failed")
    error: Text = doc("what the engine said went wrong", "")


@kind("job.retried", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class JobRetried(_JobEvent):
    """The instance running the job ended (exit, kill, lost) or could not be given it:
    the job is back at the front of its queue."""

    queue: RequiredLabel = doc("the queue")
    attempt: int = doc("the start that was lost")
    reason: Text = doc("why, in words", "")


@kind("job.dead", origin="supervisor")
@dataclass(frozen=True, slots=True, kw_only=True)
class JobDead(_JobEvent):
    """The job failed for the last time (its attempts are spent, or the engine said not to retry):
    it is kept, counted and shown, and runs again only when retried by hand."""

    queue: RequiredLabel = doc("the queue")
    attempt: int = doc("the start that failed last")
    error: Text = doc("what went wrong last", "")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent:
    """An event of a kind (or protocol version) this code does not know.

    Decoders return it instead of failing, so older clients can skip newer
    events; it keeps everything it was given so it can be forwarded as is.
    """

    kind: str
    version: int
    engine: str = ""
    seq: int | None = None
    ts: float = 0.0
    gseq: int | None = None
    origin: str | None = None
    header: dict[str, Any] = field(default_factory=dict)
    blobs: tuple[bytes | memoryview, ...] = ()


AnyEvent = Event | UnknownEvent
ENGINE_KINDS = frozenset(k for k, c in KINDS.items() if c.ORIGIN == "engine")
DROPPABLE_KINDS = frozenset(k for k, c in KINDS.items() if c.DROPPABLE)  # dropped under pressure by default
# What an engine may choose to make droppable. Phase changes, results, errors,
# hello and bye never are: they wait for room (bounded), then are dropped loudly.
MAY_BE_DROPPED = frozenset({"heartbeat", "progress", "screenshot", "log", "finding"})
