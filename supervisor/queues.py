"""Work queues as a state machine without I/O (the loop's side is supervisor/work.py).

How it works (in the manner of fleet.py): the loop tells `Queues` what happened
(a job submitted, an instance asking for work, a job done or failed, an
instance gone) and it answers with what to do: `Give` a job to an instance,
and `Changed`, a job's new state, to publish (and so to journal). It never
touches a socket or the clock it is not given.

- FIFO per queue. Work goes only to an instance that asked for it: `ask` gives
  the instance credit (how many jobs it may hold; the SDK asks for one when it
  is idle), and queued jobs go to the instances with credit, the one that
  asked first first. Nothing is pushed at an instance that did not ask, so a
  slow one never hoards work and no pipe fills (seed 002's Ctrl-C deadlock).
- At least once: a job is `running` on one instance until that instance says
  it is done or failed. An instance that ends (exit, SIGKILL, lost) puts its
  running jobs back at the front of their queue (`retried`, cause "lost").
- `attempt` counts starts. A failure (or a loss) at `max_attempts` makes the
  job `dead`: kept, counted, and queued again only by hand (`retry`).
- `draining` (a shutdown): nothing more is given out; running jobs may finish.
- A queue holds at most `max_queued` jobs waiting: a submit past it is refused
  (QueueFull), never silently dropped.
- `restore` takes back the jobs of a journal after a restart: queued ones as
  they were, running ones queued again (their instance died with the old
  supervisor), so they start with the next attempt.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

QUEUED, RUNNING, DONE, DEAD = "queued", "running", "done", "dead"
MAX_FINISHED = 100_000  # done jobs kept for `bus jobs` (counted for ever); dead ones are all kept


class QueueFull(Exception):
    """A submit past a queue's bound: nothing was queued."""


@dataclass(frozen=True, slots=True)
class QueueSpec:
    max_queued: int = 100_000
    max_attempts: int = 3


@dataclass(slots=True)
class Job:
    id: str
    queue: str
    payload: Any
    state: str = QUEUED
    attempt: int = 0              # starts so far
    instance: str | None = None   # where it runs (RUNNING), or ran last
    submitted: float = 0.0
    result: Any = None
    error: str = ""
    started: float = 0.0          # when its current (or last) start began
    ended: float = 0.0            # when it was done or went dead
    joined: float = 0.0           # when it joined its queue's end (submit, retry by hand)
    n: int = 0                    # its place in that order (what a restart restores by)


@dataclass(frozen=True, slots=True)
class Give:
    """Send `job` to `instance` (it asked for work)."""

    instance: str
    job: Job


@dataclass(frozen=True, slots=True)
class Changed:
    """`job` moved: `what` is queued, started, done, failed (and queued again), retried (lost, queued again), dead."""

    job: Job
    what: str
    cause: str = ""
    attempt: int = -1            # the job's attempt and instance when it moved (the job itself may move on before
    instance: str | None = None  # the change is published: failed, then at once started again elsewhere)

    def __post_init__(self) -> None:
        if self.attempt == -1:
            object.__setattr__(self, "attempt", self.job.attempt)
            object.__setattr__(self, "instance", self.job.instance)


Output = Give | Changed


@dataclass(slots=True)
class _Queue:
    spec: QueueSpec
    waiting: deque[str] = field(default_factory=deque)  # job ids, oldest first
    done: int = 0
    failed: int = 0
    dead: int = 0


class Queues:
    def __init__(self, specs: dict[str, QueueSpec], *, clock: Callable[[], float], ids: Iterable[str] | None = None) -> None:
        self._queues = {name: _Queue(spec) for name, spec in specs.items()}
        self._clock = clock
        self._ids = iter(ids) if ids is not None else (f"j{n}" for n in itertools.count(1))
        self.jobs: dict[str, Job] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._credit: dict[str, dict[str, int]] = {}  # queue -> instance -> jobs it may still be given (in asking order)
        self._running: dict[str, set[str]] = {}       # instance -> ids of its running jobs
        self.draining = False
        self._out: list[Output] = []
        self._n = 0  # the last `n` given

    # -- inputs ---------------------------------------------------------------

    def submit(self, queue: str, payload: Any, job_id: str | None = None) -> tuple[Job, list[Output]]:
        q = self._queue(queue)
        if len(q.waiting) >= q.spec.max_queued:
            raise QueueFull(f"queue {queue!r} holds {len(q.waiting):,} jobs waiting, its bound (max_queued): nothing was queued")
        job_id = job_id or next(self._ids)
        if job_id in self.jobs:
            raise ValueError(f"job id {job_id!r} is taken")
        now = self._clock()
        self._n += 1
        job = Job(job_id, queue, payload, submitted=now, joined=now, n=self._n)
        self.jobs[job_id] = job
        q.waiting.append(job_id)
        self._out.append(Changed(job, "queued"))
        self._hand_out(queue)
        return job, self._take_out()

    def ask(self, instance: str, queue: str, credit: int = 1) -> list[Output]:
        """`instance` may be given up to `credit` more jobs of `queue`."""
        self._queue(queue)
        held = self._credit.setdefault(queue, {})
        held[instance] = held.get(instance, 0) + max(0, credit)
        self._hand_out(queue)
        return self._take_out()

    def unask(self, instance: str, queue: str) -> None:
        """What `instance` may still be given of `queue` is void (its request was answered, or timed out)."""
        held = self._credit.get(queue)
        if held is not None:
            held.pop(instance, None)

    def done(self, instance: str, job_id: str, result: Any = None) -> list[Output]:
        job = self._running_on(instance, job_id)
        job.state, job.result, job.ended = DONE, result, self._clock()
        self._queues[job.queue].done += 1
        self._finish(job)
        self._out.append(Changed(job, "done"))
        return self._take_out()

    def failed(self, instance: str, job_id: str, error: str, *, retry: bool = True) -> list[Output]:
        job = self._running_on(instance, job_id)
        job.error = error
        self._queues[job.queue].failed += 1
        self._again(job, "failed", error, retry=retry)
        self._hand_out(job.queue)
        return self._take_out()

    def gone(self, instance: str, why: str = "its engine ended") -> list[Output]:
        """The instance ended (exit, kill, lost): its jobs go back, first in line; its credit is void."""
        for held in self._credit.values():
            held.pop(instance, None)
        ids = sorted(self._running.pop(instance, set()), key=lambda i: self.jobs[i].submitted, reverse=True)
        for job_id in ids:
            job = self.jobs[job_id]
            job.error = why
            self._again(job, "retried", why, retry=True, front=True)
        for queue in {self.jobs[i].queue for i in ids}:
            self._hand_out(queue)
        return self._take_out()

    def release(self, instance: str, job_ids: Iterable[str], why: str) -> list[Output]:
        """Jobs given to `instance` that it never started (their reply was lost, or its loop ended
        before their turn): back first in line, and that start is not counted as an attempt."""
        touched = set()
        for job_id in reversed(list(job_ids)):
            job = self.jobs.get(job_id)
            if job is None or job.state != RUNNING or job.instance != instance:
                continue  # (ended, or taken for gone meanwhile)
            self._running.get(instance, set()).discard(job_id)
            self._out.append(Changed(job, "retried", why))
            job.state, job.attempt = QUEUED, job.attempt - 1
            self._queues[job.queue].waiting.appendleft(job_id)
            touched.add(job.queue)
        for queue in touched:
            self._hand_out(queue)
        return self._take_out()

    def retry(self, job_id: str) -> list[Output]:
        """A dead job, queued again by hand (its attempts start over)."""
        job = self.jobs.get(job_id)
        if job is None or job.state != DEAD:
            raise LookupError(f"no dead job {job_id!r}")
        self._queues[job.queue].dead -= 1
        self._n += 1
        job.state, job.attempt, job.instance, job.joined, job.n = QUEUED, 0, None, self._clock(), self._n
        self._queues[job.queue].waiting.append(job_id)
        self._out.append(Changed(job, "queued", "retried by hand"))
        self._hand_out(job.queue)
        return self._take_out()

    def drain(self) -> None:
        """A shutdown: give out nothing more (running jobs may still finish)."""
        self.draining = True

    def add(self, name: str, spec: QueueSpec) -> None:
        """A queue more (or a new bound for one that exists)."""
        if name in self._queues:
            self._queues[name].spec = spec
        else:
            self._queues[name] = _Queue(spec)

    def restore(self, jobs: Iterable[Job], done: dict[str, int] | None = None) -> list[Job]:
        """Jobs from the journal, in queue order: running ones are queued again (their instance
        died with the old supervisor), first in line. `done`: the finished count per queue.
        A job of a queue this config no longer has gets that queue back (with the default
        bound), so nothing submitted is lost; the ones that were running are returned."""
        lost, waiting = [], []
        for job in jobs:
            if job.queue not in self._queues:
                self._queues[job.queue] = _Queue(QueueSpec())
            q = self._queues[job.queue]
            self.jobs[job.id] = job
            self._n = max(self._n, job.n)
            if job.state == RUNNING:
                job.state = QUEUED
                lost.append(job)
            elif job.state == QUEUED:
                waiting.append(job)
            elif job.state == DEAD:
                q.dead += 1
            elif job.state == DONE:
                self._finish(job)
        for job in lost + waiting:
            self._queues[job.queue].waiting.append(job.id)
        for name, count in (done or {}).items():
            if name in self._queues:
                self._queues[name].done += count
        return lost

    # -- views ------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._queues)

    def spec(self, queue: str) -> QueueSpec:
        return self._queue(queue).spec

    def room(self, queue: str) -> int:
        """How many more jobs `queue` takes now."""
        q = self._queue(queue)
        return max(0, q.spec.max_queued - len(q.waiting))

    def running_on(self, instance: str) -> list[Job]:
        return [self.jobs[i] for i in self._running.get(instance, ())]

    def waiting(self, queue: str) -> list[Job]:
        """Its queued jobs, next first."""
        return [self.jobs[i] for i in self._queue(queue).waiting]

    def counts(self, queue: str) -> dict[str, int]:
        q = self._queue(queue)
        running = sum(1 for ids in self._running.values() for i in ids if self.jobs[i].queue == queue)
        return {"queued": len(q.waiting), "running": running, "done": q.done, "failed": q.failed, "dead": q.dead}

    # -- inside -----------------------------------------------------------------

    def _queue(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            raise LookupError(f"no queue {name!r} (known: {', '.join(sorted(self._queues)) or 'none'})")
        return q

    def _running_on(self, instance: str, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.state != RUNNING or job.instance != instance:
            raise LookupError(f"job {job_id!r} is not running on {instance!r}")
        self._running[instance].discard(job_id)
        return job

    def _again(self, job: Job, what: str, cause: str, *, retry: bool, front: bool = False) -> None:
        q = self._queues[job.queue]
        if not retry or job.attempt >= q.spec.max_attempts:
            job.state, job.ended = DEAD, self._clock()
            q.dead += 1
            self._out.append(Changed(job, "dead", cause))
            return
        job.state = QUEUED
        (q.waiting.appendleft if front else q.waiting.append)(job.id)
        self._out.append(Changed(job, what, cause))

    def _hand_out(self, queue: str) -> None:
        if self.draining:
            return
        q, held = self._queues[queue], self._credit.get(queue, {})
        while q.waiting and held:
            instance = next(iter(held))
            job = self.jobs[q.waiting.popleft()]
            job.state, job.instance, job.started = RUNNING, instance, self._clock()
            job.attempt += 1
            self._running.setdefault(instance, set()).add(job.id)
            held[instance] -= 1
            if held[instance] <= 0:
                del held[instance]
            self._out.append(Changed(job, "started"))
            self._out.append(Give(instance, job))

    def _finish(self, job: Job) -> None:
        self._finished[job.id] = None
        while len(self._finished) > MAX_FINISHED:
            old, _ = self._finished.popitem(last=False)
            self.jobs.pop(old, None)

    def _take_out(self) -> list[Output]:
        out, self._out = self._out, []
        return out
