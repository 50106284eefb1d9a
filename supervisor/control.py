"""Control requests on the supervisor's ROUTER socket: hello, status, runs,
history, start, stop, restart, down.

A bad request gets an error reply (`ok: false`, a `code` and a one-line
`error`); it never disturbs the supervisor. See docs/PROTOCOL.md, "Control".
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import zmq

from bus._version import __version__
from bus.journal import Entry, JournalReader
from bus.keys import ROLES, Gatekeeper
from bus.protocol import RemoteProtocolError
from bus.protocol.control import (
    MAX_HISTORY_BATCH,
    MAX_HISTORY_BYTES,
    Request,
    decode_request,
    encode_error,
    encode_reply,
    request_id_of,
)
from bus.view import add_counts

from .blobs import BlobBudget
from .children import Child
from .config import ConfigError, EngineSpec, SupervisorConfig, spawned_engine
from .connections import Connections
from .fleet import Answer, Fleet
from .history import History
from .lifecycle import FINAL
from .outcome import Cause
from .replies import Readers, Replies
from .sources import source_of, user_id


class Served(Protocol):
    """What control requests read and do of the supervisor (core.Supervisor; a hub adds its upstreams)."""

    config: SupervisorConfig
    router: zmq.Socket
    replies: Replies
    readers: Readers
    connections: Connections
    gatekeeper: Gatekeeper | None
    fleet: Fleet
    children: Mapping[str, Child]
    history: History
    blobs: BlobBudget
    journal: Any
    run_id: str
    started: float
    gseq: int
    endpoints: dict[str, list[str]]
    counters: dict[str, int]
    internal_errors: int
    received_kinds: dict[str, int]   # engine events decoded, by kind
    published_kinds: dict[str, int]  # events published, by kind
    relay_lag: float                 # seconds from an engine's emit to the loop taking it (the latest pass that took one)
    rejects: dict[str, int]
    reject_sources: dict[str, dict[str, int]]
    stop_reason: str
    finished: bool
    spawns: bool  # whether `spawn` may add engines here (a hub: no)
    token: str  # in supervisor.json (owner-only): a local TCP client that read it may spawn (no ipc: Windows)
    stop: Callable[..., None]
    work: Any  # supervisor/work.py's Work (None before control is bound)

    def command(self, op: str, name: str) -> dict[str, Answer]: ...
    def spawn(self, spec: EngineSpec) -> list[str]: ...
    def forget(self, name: str) -> list[str]: ...
    def engines_status(self, *, snapshot: bool = False) -> list[dict[str, Any]]: ...
    def extra_status(self) -> dict[str, Any]: ...
    def journal_status(self) -> dict[str, Any]: ...
    def journal_reader(self) -> JournalReader | None: ...
    def flush_journal(self) -> None: ...
    def _internal_error(self, what: str, exc: Exception) -> None: ...


BATCH = 100  # requests answered before the other sockets get a turn
PLAIN_TCP = "\0plain-tcp"  # `who` for a TCP client without a key (a supervisor without keys): not the owner


def serve(sup: Served) -> None:
    for _ in range(BATCH):
        try:
            received = sup.router.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        who = user_id(received[-1])
        if who is None and source_of(received[-1], None) != "local":
            who = PLAIN_TCP  # a TCP client without a key: it may do what an ipc client may, but spawn
        frames = [f.bytes for f in received]
        # [identity, "", body] from REQ/DEALER with an envelope; [identity, body] without.
        envelope, body = (frames[:2], frames[2:]) if len(frames) > 1 and frames[1] == b"" else (frames[:1], frames[1:])
        sup.replies.take(envelope, body, who)


def guarded_answer(sup: Served, body: list[bytes], who: str | None, envelope: list[bytes] | None = None) -> list[Any]:
    """`answer`, and an error reply if it fails: a request that reaches a bug of ours is said, never fatal."""
    try:
        return answer(sup, body, who, envelope)
    except Exception as exc:
        sup._internal_error("a control request", exc)
        return [encode_error(request_id_of(body[0]) if len(body) == 1 else None, "internal-error", f"the supervisor failed on this request ({type(exc).__name__}: {exc}); it keeps running")]


def answer(sup: Served, body: list[bytes], who: str | None = None, envelope: list[bytes] | None = None) -> list[Any]:
    """The reply to one request; `who` is the CURVE client's key (None: a local client, who may do anything).
    [] when the request is held (take, job: `envelope` is where its reply goes later)."""
    if len(body) != 1:
        return [encode_error(None, "bad-request", f"a request is one frame, got {len(body)}")]
    try:
        request = decode_request(body[0])
    except RemoteProtocolError as exc:
        return [encode_error(request_id_of(body[0]), exc.reason, str(exc))]  # (the id when one could be read, so a client matching replies sees it)
    security = sup.config.security
    if security is not None and who != PLAIN_TCP and not security.may(who, request.op):  # (a keyless TCP client: Windows' local endpoints)
        name = security.name_of(who or "")
        roles = security.role_of(who or "")
        if roles == {"engines"}:
            return [encode_error(request.id, "forbidden", f"key {name!r} is an engine key: it may push events and ask hello and take, nothing else ({request.op} needs a subscriber, producer or admin key)")]
        if request.op in ("submit", "jobs", "job"):
            return [encode_error(request.id, "forbidden", f"key {name!r} may not {request.op}: that needs a producer or admin key")]
        if request.op == "take":
            return [encode_error(request.id, "forbidden", f"key {name!r} may not take work: that needs an engine or admin key")]
        if "producers" in roles and "subscribers" not in roles:
            return [encode_error(request.id, "forbidden", f"key {name!r} is a producer key: it may submit and read jobs ({request.op} needs a subscriber or admin key)")]
        return [encode_error(request.id, "forbidden", f"key {name!r} may only read (it is not an admin key): {request.op} needs an admin key")]
    if request.op == "history":
        return history(sup, request)
    if request.op in WORK_OPS:
        return work(sup, request, envelope or [b""])
    if request.op == "down":
        sup.stop("down requested", Cause.DOWN)
        return [encode_reply(request.id, stopping=True, finished=sup.finished)]
    if request.op in ("start", "stop", "restart"):
        if sup.stop_reason:
            return [encode_error(request.id, "stopping", f"the supervisor is stopping ({sup.stop_reason})")]
        try:
            outcome = sup.command(request.op, request.args["name"])
        except LookupError as exc:
            return [encode_error(request.id, "unknown-engine", str(exc.args[0]))]
        if all(answer.remote for answer in outcome.values()):
            said = "; ".join(f"{name}: {answer.remote}" for name, answer in outcome.items())
            return [encode_error(request.id, "remote", f"cannot {request.op} a remote engine: {said}")]
        return [encode_reply(request.id, engines={name: a.text() for name, a in outcome.items()}, outcome={name: a.fields() for name, a in outcome.items()})]
    if request.op == "spawn":
        return spawn(sup, request, who)
    if request.op == "forget":
        try:
            forgotten = sup.forget(request.args["name"])
        except LookupError as exc:
            return [encode_error(request.id, "unknown-engine", str(exc.args[0]))]
        except ValueError as exc:
            return [encode_error(request.id, "not-ended", str(exc))]
        except PermissionError as exc:  # (raised by forget only)
            return [encode_error(request.id, "bad-request", str(exc))]
        return [encode_reply(request.id, forgotten=forgotten)]
    if request.op == "status":
        return [encode_reply(request.id, **status(sup))]
    if request.op == "runs":
        return [encode_reply(request.id, **runs(sup))]
    if request.op == "snapshot":
        return [encode_reply(request.id, **snapshot(sup))]
    args = request.args
    if args.get("subscriber") is not None and args.get("run") in (None, sup.run_id):  # (one still reading an older run is not waited for)
        sup.readers.heard(args["subscriber"], args.get("at") or 0, bool(args.get("done")), time.monotonic())
    name = args.get("engine")
    return [encode_reply(request.id, **hello(sup), **({"engine": name_state(sup, name)} if name is not None else {}))]


WORK_OPS = frozenset({"submit", "take", "jobs", "job", "retry"})
TAKING = frozenset({"starting", "running", "unresponsive", "stopping"})  # the states of an instance that may ask for work


def work(sup: Served, request: Request, envelope: list[bytes]) -> list[Any]:
    """Work queues (docs/PROTOCOL.md section 10): supervisor/work.py decides."""
    work, args, rid = sup.work, request.args, request.id
    if work is None:
        return [encode_error(rid, "unknown-queue", "this supervisor has no work queues")]
    if request.op == "submit":
        reply, queued = work.submit(rid, args["queue"], args["jobs"], args["ids"], args["partial"], sup.stop_reason)
        if queued and sup.journal is not None:
            sup.flush_journal()  # answered once the jobs are on disk: an acknowledged job survives a kill -9
        return reply
    if request.op == "take":
        name = args["engine"]
        child = sup.children.get(name)
        if child is None:
            return [encode_error(rid, "unknown-engine", f"no engine {name!r} here: work goes to the engines this supervisor knows (started, or attached)")]
        if child.remote and child.state not in TAKING:
            return [encode_error(rid, "unknown-engine", f"engine {name!r} is {child.state}: a remote engine says hello before it takes work")]
        if not child.remote and (child.state not in TAKING or (args["pid"] is not None and args["pid"] != child.pid)):
            return [encode_error(rid, "unknown-engine", f"engine {name!r} is {child.state}{f' as process {child.pid}' if child.pid else ''}; process {args['pid']} is not it (an earlier process of it?)")]
        return work.take(envelope, rid, name, args["queue"], args["credit"], args["wait"], bool(sup.stop_reason) or child.state == "stopping")
    if request.op == "job":
        return work.job(envelope, rid, args["job"], args["wait"])
    if request.op == "jobs":
        return work.jobs(rid, args["queue"], args["state"], args["ids"], args["limit"])
    reply, queued = work.retry(rid, args["job"], sup.stop_reason)
    if queued and sup.journal is not None:
        sup.flush_journal()
    return reply


def spawn(sup: Served, request: Request, who: str | None) -> list[Any]:
    """Add an engine (checked as a TOML engine is, and its program found) and start it at once."""
    if who == PLAIN_TCP and not (sup.token and request.args.get("token") == sup.token):  # running a command is for the owner (ipc, or
        # the token of supervisor.json on local TCP: Windows, BUS_LOCAL_TCP=1) or an admin key, never for whoever reaches a port
        return [encode_error(request.id, "forbidden", "spawn over TCP needs CURVE keys and an admin key (start the supervisor with --keys); on this host, use the local session")]
    if not sup.spawns:
        return [encode_error(request.id, "remote", "a hub runs no engines of its own: spawn into one of the supervisors it follows")]
    if sup.stop_reason:
        return [encode_error(request.id, "stopping", f"the supervisor is stopping ({sup.stop_reason}): nothing was started")]
    name = request.args["name"]
    try:
        spec = spawned_engine(name, request.args["engine"], Path.cwd())
    except ConfigError as exc:
        return [encode_error(request.id, "bad-engine", str(exc))]
    except (OSError, TypeError, ValueError) as exc:  # a path the OS refuses (too long, no access), a bytes key...
        return [encode_error(request.id, "bad-engine", f"engine {name!r}: {exc}; nothing was started")]
    before = sup.gseq  # (the engine's events are all after it, even under a name used before)
    try:
        names = sup.spawn(spec)
    except ValueError as exc:
        return [encode_error(request.id, "name-taken", f"{exc}: pick another name, or forget the ended one (bus forget {name}); nothing was started")]
    except OverflowError as exc:
        return [encode_error(request.id, "too-many-engines", f"{exc}; nothing was started")]
    children = [sup.children[n] for n in names if n in sup.children]
    return [encode_reply(request.id, after=before, engines={c.name: {"state": str(c.state), "pid": c.pid, "error": c.spawn_error or None} for c in children})]


def name_state(sup: Served, name: str) -> str:
    """What an engine name is here, for a launcher about to attach under it: free,
    supervised (this supervisor starts it: attaching is refused), remote or ended (a remote one)."""
    child = sup.children.get(name)
    if child is None:
        return "free"
    if not child.remote:
        return "supervised"
    return "ended" if child.state in FINAL else "remote"


def hello(sup: Served) -> dict[str, Any]:
    return {
        "run": sup.run_id,
        "pid": os.getpid(),
        "version": __version__,
        "started": sup.started,
        "last": sup.gseq,
        "endpoints": sup.endpoints,
    }


def status(sup: Served) -> dict[str, Any]:
    return {
        **hello(sup),
        "uptime": time.time() - sup.started,
        "stopping": sup.stop_reason or None,
        "counters": {"received": sup.counters["received"], "accepted": sup.fleet.accepted, "rejected": sup.counters["rejected"],
                     "published": sup.counters["published"], "lines": sup.fleet.lines,
                     "withheld": sup.blobs.withheld, "images_held": sup.blobs.held},
        "internal_errors": sup.internal_errors,
        "replies": sup.replies.report(),
        "connections": sup.connections.report(),
        "rejects": dict(sup.rejects),
        "reject_sources": {source: dict(counts) for source, counts in sup.reject_sources.items()},
        "kinds": {"received": dict(sup.received_kinds), "published": dict(sup.published_kinds)},  # (bus/metrics.py's by-kind counters)
        "relay": {"lag": sup.relay_lag},
        "security": security_status(sup),
        "history": {"first": sup.history.first, "events": len(sup.history), "bytes": sup.history.bytes},
        "journal": sup.journal_status(),
        "engines": sup.engines_status(),
        **({"queues": sup.work.status()} if sup.work is not None and sup.work.active else {}),
        **sup.extra_status(),
    }


def security_status(sup: Served) -> dict[str, Any]:
    """How the tcp endpoints are guarded, and who was turned away."""
    config = sup.config
    out: dict[str, Any] = {
        "curve": config.security is not None and bool(config.listen),
        "insecure": config.exposed,
        "clients": {role: sorted(c.name for c in config.security.clients.values() if role in c.roles) for role in ROLES} if config.security else {},
        "handshakes_failed": sup.connections.handshakes_failed(),
    }
    if sup.gatekeeper is not None:
        out.update(sup.gatekeeper.report())
    return out


def snapshot(sup: Served) -> dict[str, Any]:
    """Status, plus what a late joiner wants to see first of each engine. It holds
    everything published up to gseq `last`: follow live from last + 1."""
    return {**status(sup), "engines": sup.engines_status(snapshot=True), "taken": time.time()}


def engine_status(child: Child, *, snapshot: bool = False) -> dict[str, Any]:
    """An engine's view (bus/view.py), with what only the supervisor knows of it (snapshot: and its newest logs, ...)."""
    exit_ = child.exit
    end = exit_.at if exit_ is not None else time.time()
    status = child.view.status(
        instance=child.instance, instances=child.spec.instances, engine=child.spec.name,
        state=str(child.state), reason=child.reason, pid=child.pid, restarts=child.tracker.total,
        started=child.started or None, uptime=(end - child.started) if child.started else None, spawns=child.spawns,
        exit=None if exit_ is None else {"code": exit_.code, "signal": exit_.signal, "signame": exit_.signame},
        error=child.spawn_error or None, events=child.events, lost=child.lost,
        dropped=sum(child.dropped.values()) + sum(child.dropped_now.values()), dropped_kinds=add_counts(child.dropped, child.dropped_now),
        recovered=child.recovered, lines=child.lines, markers=child.markers, bad_markers=child.bad_markers,
        remote=child.remote, host=child.host or None, via=child.via or None,
    )
    return {**status, **child.view.seen()} if snapshot else status


def history(sup: Served, request: Request) -> list[Any]:
    """From memory while it holds the range, else from the journal; earlier runs from the journal."""
    args = request.args
    run = args["run"] or sup.run_id
    reader = sup.journal_reader()
    from_memory = run == sup.run_id and (reader is None or sup.history.first <= args["after"] + 1)
    if not from_memory and (reader is None or (run != sup.run_id and not _known_run(reader, run))):
        return [encode_error(request.id, "unknown-run", f"no run {run!r} in this session's history")]
    if not from_memory and run == sup.run_id and sup.journal is not None:
        sup.flush_journal()  # what memory let go of may still be on its way to disk
    limit = min(args["limit"] or MAX_HISTORY_BATCH, MAX_HISTORY_BATCH)
    source = sup.history if from_memory else _ReaderFor(reader, run)  # type: ignore[arg-type]
    entries, more = source.select(
        after=args["after"], until=args["until"], last=args["last"], since=args["since"],
        kinds=args["kinds"], engines=args["engines"], limit=limit, max_bytes=MAX_HISTORY_BYTES,
    )
    frames: list[Any] = []
    for entry in entries:
        frames.extend(entry.frames)
    first = sup.history.first if from_memory else reader.first(run)  # type: ignore[union-attr]
    reply = encode_reply(
        request.id,
        run=run,
        first=first,
        last=sup.gseq if run == sup.run_id else _last_of(reader, run),
        count=len(entries),
        more=more,
        next=entries[-1].gseq if entries else args["after"],
        frames=[len(entry.frames) for entry in entries],
    )
    return [reply, *frames]


class _ReaderFor:
    """A journal reader bound to one run, shaped like History."""

    def __init__(self, reader: JournalReader, run: str) -> None:
        self.reader, self.run = reader, run

    def select(self, **query: Any) -> tuple[list[Entry], bool]:
        return self.reader.select(self.run, **query)


def _known_run(reader: JournalReader, run: str) -> bool:
    return any(info.run == run for info in reader.runs())


def _last_of(reader: JournalReader | None, run: str) -> int:
    return next((info.last for info in reader.runs() if info.run == run), 0) if reader else 0


def runs(sup: Served) -> dict[str, Any]:
    """The runs this session's journal holds, oldest first; the current one marked."""
    reader = sup.journal_reader()
    if sup.journal is not None:
        sup.flush_journal()
    known = [info.as_dict() for info in reader.runs()] if reader else []
    if not any(info["run"] == sup.run_id for info in known):
        known.append({"run": sup.run_id, "started": sup.started, "stopped": None, "code": None, "pid": os.getpid(), "first": sup.history.first, "last": sup.gseq, "events": len(sup.history)})
    return {"current": sup.run_id, "runs": known}
