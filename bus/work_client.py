"""Putting work into a supervisor's queues and reading what became of it (docs/PROTOCOL.md section 10).

Shared by the Python API (bus.app.Bus, bus.aio.AsyncBus) and the command line
(`bus submit`, `bus jobs`): a submit of many jobs goes in requests of at most
MAX_ITEMS jobs and about SUBMIT_BYTES of payload each; with `wait`, what a full
queue refused is submitted again once there is room, with a growing pause.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Generator, Iterator, Sequence

import msgpack

from . import exitcodes
from .errors import BusError
from .protocol.limits import MAX_ITEMS

SUBMIT_BYTES = 512 * 1024  # payload bytes in one submit request (a request frame may hold 1 MiB)
PAUSE_FIRST, PAUSE_MAX = 0.02, 1.0  # seconds between submits while a queue is full (wait=True)
MAX_JOB_WAIT = 3600.0  # one `job` request is held at most this long (the protocol's bound)


class QueueFull(BusError):
    """A submit past a queue's bound (max_queued), without `wait`."""

    exit_code = exitcodes.ENGINE_FAILED  # (`bus submit`: 1, the work was refused)


class JobDead(BusError):
    """The job failed for the last time (its attempts are spent); `job` holds what the supervisor said of it."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"job {job['id']} is dead after attempt {job['attempt']}: {job.get('error') or 'failed'} (retry it by hand: bus retry {job['id']})")
        self.job = job


class JobTimeout(BusError):
    """A job did not end within the time asked for."""


def batches(payloads: Sequence[dict[str, Any]]) -> Iterator[tuple[int, int]]:
    """(start, end) slices of `payloads` that each fit one submit request."""
    start, size = 0, 0
    for n, payload in enumerate(payloads):
        length = len(msgpack.packb(payload, use_bin_type=True))
        if n > start and (n - start >= MAX_ITEMS or size + length > SUBMIT_BYTES):
            yield start, n
            start, size = n, 0
        size += length
    if start < len(payloads):
        yield start, len(payloads)


Step = tuple[str, Any]  # ("submit", request arguments) -> the reply is sent back in; ("sleep", seconds)


def submit_steps(queue: str, payloads: Sequence[dict[str, Any]], *, ids: Sequence[str] | None = None,
                 wait: bool = False, timeout: float | None = None) -> Generator[Step, Any, list[str]]:
    """How to submit every payload, in order, as steps a sync or an asyncio driver carries out
    (submit_all, bus.aio); returns their job ids. Without `wait` a full queue raises QueueFull
    (what earlier requests queued stays queued: their ids are in the error's `ids`)."""
    out: list[str] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    for start, end in batches(payloads):
        chunk, chunk_ids = list(payloads[start:end]), (list(ids[start:end]) if ids is not None else None)
        pause = PAUSE_FIRST
        while chunk:
            args: dict[str, Any] = {"queue": queue, "jobs": chunk, "partial": wait}
            if chunk_ids is not None:
                args["ids"] = chunk_ids
            try:
                reply = yield ("submit", args)
            except BusError as exc:
                if getattr(exc, "code", "") == "queue-full":
                    full = QueueFull(f"{exc}" + (f" ({len(out):,} jobs before these were queued)" if out else ""))
                    full.ids = out  # type: ignore[attr-defined]
                    raise full from None
                raise
            given = reply["ids"]
            taken = [i for i in given if i is not None]
            out.extend(taken)
            left = [n for n, i in enumerate(given) if i is None]
            chunk = [chunk[n] for n in left]
            if chunk_ids is not None:
                chunk_ids = [chunk_ids[n] for n in left]
            if chunk:
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise QueueFull(f"queue {queue!r} stayed full for {timeout:g}s: {len(chunk):,} jobs were not queued ({len(out):,} were)")
                yield ("sleep", pause)
                pause = min(PAUSE_MAX, pause * 2) if not taken else PAUSE_FIRST
    return out


def submit_all(request: Callable[..., dict[str, Any]], queue: str, payloads: Sequence[dict[str, Any]], **options: Any) -> list[str]:
    """submit_steps, carried out with a blocking `request(op, **args)`."""
    steps = submit_steps(queue, payloads, **options)
    reply: Any = None
    try:
        while True:
            what, arg = steps.send(reply)
            if what == "sleep":
                time.sleep(arg)
                reply = None
                continue
            try:
                reply = request(what, **arg)
            except BusError as exc:
                steps.throw(exc)  # (raises it, or QueueFull for a full queue)
    except StopIteration as stop:
        return list(stop.value)


def job_wait(timeout: float | None, deadline: float | None) -> float:
    """How long the next `job` request may be held."""
    if deadline is None:
        return MAX_JOB_WAIT
    return max(0.0, min(MAX_JOB_WAIT, deadline - time.monotonic()))


def ended(job: dict[str, Any]) -> bool:
    return job["state"] in ("done", "dead")


def result_of(job: dict[str, Any]) -> dict[str, Any]:
    """A done job's result; JobDead for a dead one."""
    if job["state"] == "dead":
        raise JobDead(job)
    return job.get("result") or {}


def read_payloads(text: str) -> list[dict[str, Any]]:
    """Jobs from text: one JSON object, or JSON lines (one object per line; blank lines skipped).
    ValueError says which line is wrong."""
    import json

    stripped = text.strip()
    if not stripped:
        return []
    try:
        one = json.loads(stripped)
    except json.JSONDecodeError:
        one = None
    else:
        if isinstance(one, dict):
            return [one]
        if isinstance(one, list) and all(isinstance(x, dict) for x in one):
            return one
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(value, dict):
            raise ValueError(f"line {number}: a job is a JSON object ({{\"path\": \"a.flac\"}}), got {type(value).__name__}")
        out.append(value)
    return out
