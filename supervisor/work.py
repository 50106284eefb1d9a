"""Work queues in the loop: requests in, events and replies out (the decisions are queues.py's).

How it works: control requests (docs/PROTOCOL.md section 10) come here from
control.py. `submit` queues jobs; `take` gives the asking instance credit and is
answered with the jobs it is given, or held (parked) until it is given some or
its `wait` runs out; `job` with `wait` is held until the job ends. What
`Queues` decides comes back as outputs: each change of a job is published as a
`job.*` event and kept for the journal (its `jobs` table holds every job in its
newest state, written in the same transaction order as the events), and each
job given to an instance goes out in the reply to that instance's parked take.

The loop tells this module what it sees of the engines: a `job.end` an engine
pushed (`end`), and an instance that ended (`gone`: exited, killed, lost), whose
jobs go back to the front of their queue at once. A shutdown `drain`s: nothing
more is given out, parked takes are told to stop, running jobs may finish.

Durability: a submit is answered once its jobs are in the journal (the loop
flushes it first), so a job that was acknowledged survives a `kill -9` of the
supervisor; `restore` takes the journal's jobs back at the next start (running
ones queued again first, with their attempt counted). Without a journal
(`--no-journal`) queues live in memory only.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import msgpack

from bus.protocol.control import encode_error, encode_reply
from bus.protocol import Event, JobDead, JobDone, JobFailed, JobQueued, JobRetried, JobStarted, LocalProtocolError, RemoteProtocolError
from bus.protocol.fields import check_data

from .queues import DEAD, DONE, QUEUED, RUNNING, Changed, Give, Job, Queues, QueueSpec

STATES = (QUEUED, RUNNING, DONE, DEAD)
RATE_WINDOW = 10.0  # seconds over which `rate` (jobs ended per second) is measured
MAX_WATCHERS = 10_000  # `job` requests held at once (past it, one is answered at once with the job's state)


@dataclass(slots=True)
class _Take:
    envelope: list[bytes]
    id: Any
    queue: str
    deadline: float


@dataclass(slots=True)
class _Watch:
    envelope: list[bytes]
    id: Any
    deadline: float


class Work:
    def __init__(self, specs: dict[str, QueueSpec], run_id: str, *, publish: Callable[[Event], None],
                 deliver: Callable[[list[bytes], list[Any]], bool], clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        ids = (f"{run_id[:8]}-{n}" for n in itertools.count(1))
        self.queues = Queues(specs, clock=clock, ids=ids)
        self._publish, self._deliver, self._clock, self._monotonic = publish, deliver, clock, monotonic
        self._takes: dict[str, _Take] = {}         # instance -> its parked take
        self._watchers: dict[str, list[_Watch]] = {}  # job id -> `job` requests waiting for its end
        self._rows: dict[str, Job] = {}             # changed since the last hand-over to the journal
        self._ended: dict[str, deque[float]] = {name: deque() for name in specs}  # recent ends, for the rate
        self.lost_replies = 0  # take replies whose instance was gone before they could go (their jobs were queued again)

    @property
    def active(self) -> bool:
        return bool(self.queues.names)

    # -- requests (control.py) -----------------------------------------------------------

    def submit(self, request_id: Any, queue: str, payloads: list[dict[str, Any]], ids: list[str] | None, partial: bool, stopping: str) -> tuple[list[Any], bool]:
        """The reply, and whether jobs were queued (the loop then flushes the journal before it answers)."""
        if queue not in self.queues.names:
            return [encode_error(request_id, "unknown-queue", self._unknown(queue))], False
        if stopping:
            return [encode_error(request_id, "stopping", f"the supervisor is stopping ({stopping}): nothing was queued")], False
        if ids is not None and len(ids) != len(payloads):
            return [encode_error(request_id, "bad-request", f"submit: {len(ids)} ids for {len(payloads)} jobs: give one id per job, or none")], False
        for n, payload in enumerate(payloads):
            problem = _payload_problem(payload)
            if problem:
                return [encode_error(request_id, "bad-job", f"job {n + 1} of {len(payloads)}: {problem}; nothing was queued")], False
            if ids is not None and not ids[n]:
                return [encode_error(request_id, "bad-job", f"job {n + 1} of {len(payloads)}: an empty id; nothing was queued")], False
        room = self.queues.room(queue)
        fresh = [n for n in range(len(payloads)) if ids is None or ids[n] not in self.queues.jobs]
        if len(fresh) > room and not partial:  # (partial: as many as there is room for; the rest come back as null ids)
            depth = self.queues.counts(queue)["queued"]
            return [encode_error(request_id, "queue-full", f"queue {queue!r} holds {depth:,} jobs waiting and takes {room:,} more (max_queued): "
                                 f"{len(fresh):,} were refused, nothing was queued (wait and submit again, or raise max_queued)")], False
        taken = set(fresh[:room])
        out_ids: list[str | None] = []
        for n, payload in enumerate(payloads):
            if ids is not None and ids[n] in self.queues.jobs:
                out_ids.append(ids[n])  # submitted before: the same job (a retried submit queues nothing twice)
                continue
            if n not in taken:
                out_ids.append(None)
                continue
            job, outputs = self.queues.submit(queue, payload, None if ids is None else ids[n])  # (room was checked: no QueueFull)
            out_ids.append(job.id)
            self._apply(outputs)
        return [encode_reply(request_id, ids=out_ids, queued=len(taken), refused=out_ids.count(None))], bool(taken)

    def take(self, envelope: list[bytes], request_id: Any, instance: str, queue: str, credit: int, wait: float, draining: bool) -> list[Any]:
        """An instance asks for up to `credit` jobs of `queue`: the reply now, or [] (held)."""
        if queue not in self.queues.names:
            return [encode_error(request_id, "unknown-queue", self._unknown(queue))]
        if draining or self.queues.draining:
            return [encode_reply(request_id, jobs=[], stop=True)]
        old = self._takes.pop(instance, None)
        if old is not None:  # asked again before its last ask was answered: that one is answered empty
            self.queues.unask(instance, old.queue)
            self._deliver(old.envelope, [encode_reply(old.id, jobs=[], stop=False)])
        self._takes[instance] = _Take(envelope, request_id, queue, self._monotonic() + wait)
        self._apply(self.queues.ask(instance, queue, max(1, credit)))
        take = self._takes.get(instance)
        if take is None:
            return []  # answered (with its jobs) while applying
        if wait <= 0:
            del self._takes[instance]
            self.queues.unask(instance, queue)
            return [encode_reply(request_id, jobs=[], stop=False)]
        return []

    def job(self, envelope: list[bytes], request_id: Any, job_id: str, wait: float | None) -> list[Any]:
        job = self.queues.jobs.get(job_id)
        if job is None:
            return [encode_error(request_id, "unknown-job", f"no job {job_id!r} here (finished jobs are kept: the newest 100,000)")]
        if wait and job.state == QUEUED and self.queues.draining:
            return [_stopped(request_id, job)]  # (it starts no more in this run: nothing to wait for here)
        if wait and job.state not in (DONE, DEAD) and sum(map(len, self._watchers.values())) < MAX_WATCHERS:
            self._watchers.setdefault(job_id, []).append(_Watch(envelope, request_id, self._monotonic() + wait))
            return []
        return [encode_reply(request_id, job=job_view(job))]

    def jobs(self, request_id: Any, queue: str | None, state: str | None, ids: list[str] | None, limit: int) -> list[Any]:
        if queue is not None and queue not in self.queues.names:
            return [encode_error(request_id, "unknown-queue", self._unknown(queue))]
        if state is not None and state not in STATES:
            return [encode_error(request_id, "bad-request", f"jobs: state {state!r} is not one of {', '.join(STATES)}")]
        if ids is not None:
            found = (self.queues.jobs.get(i) for i in ids)
            chosen: Iterable[Job] = (j for j in found if j is not None)
        else:
            chosen = self.queues.jobs.values()
        out, total = [], 0
        for job in chosen:
            if (queue is None or job.queue == queue) and (state is None or job.state == state):
                total += 1
                if len(out) < limit:
                    out.append(job_view(job))
        return [encode_reply(request_id, jobs=out, total=total, queues=self.status())]

    def retry(self, request_id: Any, job_id: str, stopping: str) -> tuple[list[Any], bool]:
        if stopping:
            return [encode_error(request_id, "stopping", f"the supervisor is stopping ({stopping}): nothing was queued")], False
        try:
            self._apply(self.queues.retry(job_id))
        except LookupError:
            job = self.queues.jobs.get(job_id)
            said = f"job {job_id!r} is {job.state}, not dead: only a dead job is retried by hand" if job else f"no job {job_id!r} here"
            return [encode_error(request_id, "unknown-job", said)], False
        return [encode_reply(request_id, job=job_view(self.queues.jobs[job_id]))], True

    # -- what the loop sees --------------------------------------------------------------

    def end(self, instance: str, job_id: str, ok: bool, result: Any, error: str, retry: bool, started: bool = True) -> None:
        """A `job.end` from `instance`. RemoteProtocolError (unknown-job): it does not run that job
        (it was queued again meanwhile: its instance was taken for gone, or never given it)."""
        try:
            if not started:
                job = self.queues.jobs.get(job_id)
                if job is None or job.state != RUNNING or job.instance != instance:
                    raise LookupError(f"job {job_id!r} is not running on {instance!r}")
                outputs = self.queues.release(instance, [job_id], "handed back unstarted by its engine (its loop ended before the job's turn)")
            elif ok:
                outputs = self.queues.done(instance, job_id, result)
            else:
                outputs = self.queues.failed(instance, job_id, error, retry=retry)
        except LookupError as exc:
            raise RemoteProtocolError(f"job.end: {exc}", reason="unknown-job") from None
        self._apply(outputs)

    def gone(self, instance: str, why: str) -> None:
        """The instance ended (exit, kill, lost): its parked take is void, its jobs go back."""
        self._takes.pop(instance, None)
        self._apply(self.queues.gone(instance, why))

    def drain(self) -> None:
        """A shutdown: nothing more is given out; instances waiting for work are told to stop,
        and whoever waits for a queued job is told it will not start in this run."""
        self.queues.drain()
        self._stop_takes()
        self._answer_watchers(lambda job: job is None or job.state != RUNNING)

    def close(self) -> None:
        """The loop is over: every request still held is answered (nothing waits for a supervisor that is gone)."""
        self.queues.drain()
        self._stop_takes()
        self._answer_watchers(lambda job: True)

    def lost(self, envelope: list[bytes], reply: list[Any]) -> None:
        """A reply that could not reach its peer (it disconnected): the jobs it gave were never started there."""
        try:
            body = msgpack.unpackb(reply[-1], raw=False)
            given = [j["id"] for j in body.get("jobs") or ()] if body.get("ok") else []
        except Exception:  # noqa: BLE001 - (not a take reply of ours)
            return
        by_instance: dict[str, list[str]] = {}
        for job_id in given:
            job = self.queues.jobs.get(job_id)
            if job is not None and job.state == RUNNING and job.instance:
                by_instance.setdefault(job.instance, []).append(job_id)
        for instance, ids in by_instance.items():
            self.lost_replies += 1
            self._apply(self.queues.release(instance, ids, "its engine had disconnected before the job reached it"))

    def _stop_takes(self) -> None:
        for instance, take in list(self._takes.items()):
            del self._takes[instance]
            self.queues.unask(instance, take.queue)
            self._deliver(take.envelope, [encode_reply(take.id, jobs=[], stop=True)])

    def _answer_watchers(self, which: Callable[[Job | None], bool]) -> None:
        for job_id, watchers in list(self._watchers.items()):
            job = self.queues.jobs.get(job_id)
            if not which(job):
                continue
            del self._watchers[job_id]
            for w in watchers:
                self._deliver(w.envelope, [_stopped(w.id, job) if job is not None else encode_error(w.id, "unknown-job", f"no job {job_id!r} here")])

    def tick(self, now: float) -> float | None:
        """Answer what waited long enough; the next time something is due."""
        due: float | None = None
        for instance, take in list(self._takes.items()):
            if take.deadline <= now:
                del self._takes[instance]
                self.queues.unask(instance, take.queue)
                self._deliver(take.envelope, [encode_reply(take.id, jobs=[], stop=False)])
            else:
                due = take.deadline if due is None else min(due, take.deadline)
        for job_id, watchers in list(self._watchers.items()):
            for w in [w for w in watchers if w.deadline <= now]:
                watchers.remove(w)
                job = self.queues.jobs.get(job_id)
                self._deliver(w.envelope, [encode_reply(w.id, job=job_view(job)) if job else encode_error(w.id, "unknown-job", f"no job {job_id!r} here")])
            if watchers:
                due = min([w.deadline for w in watchers] + ([due] if due is not None else []))
            else:
                del self._watchers[job_id]
        return due

    def restore(self, rows: list[tuple[Any, ...]], done: dict[str, int]) -> list[Job]:
        """The journal's jobs (bus.journal.load_jobs) back in their queues; the ones that were running."""
        jobs = [_job_of(row) for row in rows]
        lost = self.queues.restore(jobs, done)
        for name in self.queues.names:
            self._ended.setdefault(name, deque())
        for job in lost:
            self._publish(JobRetried(engine=job.instance or "", job=job.id, queue=job.queue, attempt=job.attempt,
                                     reason="its supervisor ended while it ran (it was in the journal)"))
            self._rows[job.id] = job
        return lost

    def rows(self) -> list[tuple[Any, ...]]:
        """The jobs changed since the last call, as journal rows."""
        if not self._rows:
            return []
        changed, self._rows = self._rows, {}
        return [_row_of(job) for job in changed.values()]

    def status(self) -> dict[str, dict[str, Any]]:
        now = self._clock()
        out = {}
        for name in self.queues.names:
            ended = self._ended.setdefault(name, deque())
            while ended and ended[0] < now - RATE_WINDOW:
                ended.popleft()
            counts = self.queues.counts(name)
            spec = self.queues.spec(name)
            out[name] = {**counts, "rate": round(len(ended) / RATE_WINDOW, 2), "max_queued": spec.max_queued, "max_attempts": spec.max_attempts}
        return out

    def running(self) -> dict[str, list[dict[str, Any]]]:
        """instance -> the jobs it runs (bus web, status)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for job in self.queues.jobs.values():
            if job.state == RUNNING and job.instance:
                out.setdefault(job.instance, []).append({"id": job.id, "queue": job.queue, "attempt": job.attempt, "started": job.started})
        return out

    # -- inside ------------------------------------------------------------------------

    def _unknown(self, queue: str) -> str:
        known = ", ".join(self.queues.names) or 'none: give an engine queue = "NAME" in the config'
        return f"no queue {queue!r} here (queues: {known})"

    def _apply(self, outputs: list[Changed | Give]) -> None:
        given: dict[str, list[Job]] = {}
        for out in outputs:
            if isinstance(out, Give):
                given.setdefault(out.instance, []).append(out.job)
                continue
            job = out.job
            self._rows[job.id] = job
            self._publish(_event_of(out))
            if out.what in ("done", "dead"):
                self._ended.setdefault(job.queue, deque()).append(self._clock())
                for w in self._watchers.pop(job.id, ()):
                    self._deliver(w.envelope, [encode_reply(w.id, job=job_view(job))])
        unsent: list[tuple[str, list[Job], str]] = []  # (released after the loop: releasing hands out again, and so changes `given`'s takes)
        for instance, jobs in given.items():
            take = self._takes.pop(instance, None)
            if take is None:  # (never: a Give follows an ask, and an ask parks a take first)
                unsent.append((instance, jobs, "it was given to an instance that had not asked (a bug of ours)"))
                continue
            self.queues.unask(instance, take.queue)  # one reply per take: what it did not get now, it asks for again
            reply = encode_reply(take.id, jobs=[{"id": j.id, "queue": j.queue, "payload": j.payload, "attempt": j.attempt} for j in jobs], stop=False)
            if not self._deliver(take.envelope, [reply]):
                self.lost_replies += 1
                unsent.append((instance, jobs, "its engine had disconnected before the job reached it"))
        for instance, jobs, why in unsent:
            self._apply(self.queues.release(instance, [j.id for j in jobs], why))


def job_view(job: Job) -> dict[str, Any]:
    """A job as `jobs` and `job` replies show it."""
    return {"id": job.id, "queue": job.queue, "state": job.state, "attempt": job.attempt, "instance": job.instance,
            "payload": job.payload, "result": job.result, "error": job.error or None,
            "submitted": job.submitted, "started": job.started or None, "ended": job.ended or None}


def _event_of(change: Changed) -> Event:
    job, what, attempt = change.job, change.what, change.attempt  # (attempt and instance as they were at the change)
    engine = change.instance or ""
    if what == "queued":
        return JobQueued(job=job.id, queue=job.queue, payload=job.payload, attempt=attempt, cause=change.cause)
    if what == "started":
        return JobStarted(engine=engine, job=job.id, queue=job.queue, attempt=attempt)
    if what == "done":
        result = job.result if isinstance(job.result, dict) else {}
        return JobDone(engine=engine, job=job.id, queue=job.queue, attempt=attempt, result=result, runtime=max(0.0, job.ended - job.started))
    if what == "failed":
        return JobFailed(engine=engine, job=job.id, queue=job.queue, attempt=attempt, error=change.cause)
    if what == "retried":
        return JobRetried(engine=engine, job=job.id, queue=job.queue, attempt=attempt, reason=change.cause)
    return JobDead(engine=engine, job=job.id, queue=job.queue, attempt=attempt, error=change.cause)


def _stopped(request_id: Any, job: Job) -> Any:
    return encode_error(request_id, "stopping", f"the supervisor is stopping: job {job.id} is {job.state} and did not end in this run"
                        f"{' (with a journal, the next start takes it back)' if job.state in (QUEUED, RUNNING) else ''}")


def _payload_problem(payload: Any) -> str:
    """Why this cannot be a job's payload ('' if it can): a map, as a finding's data."""
    try:
        check_data(payload, "payload")
    except LocalProtocolError as exc:
        return str(exc)
    return ""


def _pack(value: Any) -> bytes | None:
    return None if value is None else msgpack.packb(value, use_bin_type=True)


def _unpack(value: bytes | None) -> Any:
    return None if value is None else msgpack.unpackb(value, raw=False, strict_map_key=False)


def _row_of(job: Job) -> tuple[Any, ...]:
    return (job.id, job.queue, job.state, job.attempt, job.instance, _pack(job.payload), _pack(job.result), job.error,
            job.submitted, job.joined, job.started, job.ended, job.n)


def _job_of(row: tuple[Any, ...]) -> Job:
    (id_, queue, state, attempt, instance, payload, result, error, submitted, joined, started, ended, n) = row
    return Job(id_, queue, _unpack(payload), state=state, attempt=attempt, instance=instance, submitted=submitted or 0.0,
               result=_unpack(result), error=error or "", started=started or 0.0, ended=ended or 0.0, joined=joined or 0.0, n=n)
