"""Figure 13: jobs through a work queue, beside seed 002's multiprocessing pool on the same jobs.

- Seed 002's pattern: a `multiprocessing.Queue` of jobs and one of results, N
  forked workers looping get -> work -> put result, a `None` sentinel each.
  Timed from the first put to the last result read.
- Ours: the real supervisor (`bus up -q`, journal on) with one engine of N
  instances serving queue "q"; each instance runs `for job in eng.jobs():
  job.done(...)` (bench/workers.py `jobs`). The producer submits every job
  with `Bus.submit_many` (requests of 10,000, each acknowledged once it is in
  the journal) and reads the queue's `done` count from `status` until all are
  done. Timed from the first submit to the count reaching the total.
- "no-op" jobs do nothing; "1 ms" jobs spin the CPU for 1 ms, both sides alike.
- Submit to start on an idle pool: one job at a time, waited for; the start is
  when the job is in the worker's hands (its clock, the same machine's), for
  ours and for the multiprocessing queue.
Both sides warm up first (every worker has taken a job) and run in turn in one process run.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import time
from typing import Any

from bus.app import Bus

from .run import Bench, cpu_seconds, pct  # (run.py imports this module only inside Bench.queues)
from .workers import spin

QUEUE = "q"


# -- seed 002's pool ---------------------------------------------------------------------

def _mp_worker(jobs: Any, results: Any, work: float) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        got = time.time()
        spin(work)
        results.put({"n": job["n"], "got": got})


def mp_pool(n: int, workers: int, work: float) -> float:
    """Jobs per second through N forked workers over a job queue and a result queue."""
    ctx = mp.get_context("fork")
    jobs, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_mp_worker, args=(jobs, results, work)) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        for k in range(workers * 2):  # warm up: every worker running
            jobs.put({"n": -k})
        for _ in range(workers * 2):
            results.get(timeout=60)
        t0 = time.perf_counter()
        for k in range(n):
            jobs.put({"n": k})
        for _ in range(n):
            results.get(timeout=120)
        took = time.perf_counter() - t0
    finally:
        for _ in procs:
            jobs.put(None)
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    return n / took


def mp_latency(runs: int) -> list[float]:
    """Seconds from put to the worker's get, one job at a time, the pool idle."""
    ctx = mp.get_context("fork")
    jobs, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_mp_worker, args=(jobs, results, 0.0)) for _ in range(2)]
    for p in procs:
        p.start()
    out = []
    try:
        for k in range(runs + 5):
            time.sleep(0.002)  # (idle: the worker is blocked in get, as a pool between jobs)
            t = time.time()
            jobs.put({"n": k})
            got = results.get(timeout=60)["got"]
            if k >= 5:
                out.append(got - t)
    finally:
        for _ in procs:
            jobs.put(None)
        for p in procs:
            p.join(30)
    return out


# -- ours ------------------------------------------------------------------------------

def _pool(bench: Bench, instances: int, work: float) -> Any:
    engine = bench.engine("jobs", str(work), instances=instances)
    engine["queue"] = QUEUE
    return bench.supervisor({"w": engine}, stop_timeout=10)


def _done(bus: Bus) -> int:
    return int(bus.status()["queues"][QUEUE]["done"])


def _until_done(bus: Bus, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _done(bus) < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs not done after {timeout:.0f} s: {bus.status()['queues'][QUEUE]}")
        time.sleep(0.005)  # (a benchmark polling a count: at most 5 ms late on a run of seconds)


def ours_pool(bench: Bench, n: int, instances: int, work: float) -> tuple[float, float]:
    """Jobs per second through N instances, and the supervisor's CPU microseconds per job."""
    proc = _pool(bench, instances, work)
    try:
        with Bus(timeout=60) as bus:
            warm = instances * 2
            bus.submit_many(QUEUE, [{"n": -k} for k in range(warm)])
            _until_done(bus, warm, 120)
            cpu0 = cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            bus.submit_many(QUEUE, [{"n": k} for k in range(n)])
            _until_done(bus, warm + n, 600)
            took = time.perf_counter() - t0
            cpu = cpu_seconds(proc.pid) - cpu0
        return n / took, 1e6 * cpu / n
    finally:
        bench.down(proc)


def ours_latency(bench: Bench, runs: int) -> tuple[list[float], list[float]]:
    """Seconds from submit to the job in an instance's hands, and to the submit's ack; one at a time, pool idle."""
    proc = _pool(bench, 2, 0.0)
    starts, acks = [], []
    try:
        with Bus(timeout=60) as bus:
            for k in range(runs + 5):
                time.sleep(0.002)  # (idle: both instances parked in take)
                t = time.time()
                job_id = bus.submit(QUEUE, {"n": k})
                acked = time.time()
                got = bus.result(job_id, timeout=60)["got"]
                if k >= 5:
                    starts.append(got - t)
                    acks.append(acked - t)
        return starts, acks
    finally:
        bench.down(proc)


def measure(bench: Bench) -> dict[str, dict[str, Any]]:
    noop, work_n = bench.n(20_000), bench.n(4_000)
    out: dict[str, dict[str, Any]] = {}
    jobs: dict[str, Any] = {"no-op jobs": noop, "1 ms jobs": work_n}
    for label, n, work in (("no-op", noop, 0.0), ("1 ms", work_n, 0.001)):
        for workers in (2, 8):
            print(f"bench: queues {label} x{workers} ...", file=sys.stderr, flush=True)
            base = mp_pool(n, workers, work)
            ours, cpu = ours_pool(bench, n, workers, work)
            jobs[f"{label}, {workers} workers: multiprocessing jobs/s"] = base
            jobs[f"{label}, {workers} workers: ours jobs/s"] = ours
            jobs[f"{label}, {workers} workers: ours / multiprocessing"] = ours / base
            jobs[f"{label}, {workers} workers: supervisor CPU us/job"] = cpu
    out["13_work_queue_jobs_per_s"] = jobs
    runs = 20 if bench.quick else 200
    starts, acks = ours_latency(bench, runs)
    base = mp_latency(runs)
    out["13_work_queue_submit_to_start_ms"] = {
        "runs": runs,
        "ours p50": 1000 * statistics.median(starts), "ours p99": 1000 * pct(starts, 99),
        "ours submit acknowledged p50": 1000 * statistics.median(acks),
        "multiprocessing put to get p50": 1000 * statistics.median(base), "multiprocessing p99": 1000 * pct(base, 99),
    }
    return out
