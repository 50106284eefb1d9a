"""The processes the benchmark starts: engines (SDK, stdout markers) and the C proxy.

    python bench/workers.py sdk-progress N [--go FIFO]     N progress events through the SDK
    python bench/workers.py sdk-paced RATE SECONDS [--go FIFO]
    python bench/workers.py sdk-shots COUNT SIZE [--go FIFO]
    python bench/workers.py sdk-idle                        an engine that waits to be stopped
    python bench/workers.py stdout-progress N               ##PROGRESS:{json} lines
    python bench/workers.py stdout-shots COUNT SIZE         ##PROGRESS:{"type": "screenshot", "data": base64}
    python bench/workers.py chatty N FILE [--go FIFO]          N short lines on stdout; writes "seconds end" to FILE
    python bench/workers.py jobs WORK_SECONDS                 a pool worker: takes jobs, spins WORK_SECONDS of CPU on each
    python bench/workers.py proxy PULL_ENDPOINT PUB_ENDPOINT

An SDK worker that is given --go waits until one byte can be read from that
FIFO, so the benchmark can subscribe first (every mode but proxy takes it). It writes how long its emit calls
took, in total, to stderr as `emit_seconds=S`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def wait_for_go(argv: list[str]) -> list[str]:
    if "--go" in argv:
        at = argv.index("--go")
        fd = os.open(argv[at + 1], os.O_RDONLY)
        os.read(fd, 1)
        os.close(fd)
        argv = argv[:at] + argv[at + 2 :]
    return argv


def spin(seconds: float) -> None:
    """`seconds` of CPU work (a job of figure 13)."""
    if seconds > 0:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass


def payload(size: int, n: int) -> bytes:
    return (n.to_bytes(8, "big") * (size // 8 + 1))[:size]


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode != "proxy":
        argv = wait_for_go(argv)
    if mode == "proxy":
        import zmq

        ctx = zmq.Context()
        pull, pub = ctx.socket(zmq.PULL), ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 0)  # unbounded: the baseline must not drop what a slow reader has not taken
        pull.bind(argv[1])
        pub.bind(argv[2])
        zmq.proxy(pull, pub)  # until killed
        return
    if mode == "stdout-progress":
        n = int(argv[1])
        out = sys.stdout
        started = time.perf_counter()
        for i in range(1, n + 1):
            out.write("##PROGRESS:" + json.dumps({"phase": "bench", "done": i, "total": n, "ts": time.time()}) + "\n")
        out.flush()
        print(f"emit_seconds={time.perf_counter() - started:.6f}", file=sys.stderr, flush=True)
        return
    if mode == "chatty":  # a verbose program: its own time to print N lines (no SDK)
        n, where = int(argv[1]), argv[2]
        write = sys.stdout.write
        started = time.perf_counter()
        for i in range(n):
            write(f"line {i} of a chatty child\n")
        sys.stdout.flush()
        seconds = time.perf_counter() - started
        with open(where, "w") as out:
            out.write(f"{seconds} {time.time()}\n")
        return
    if mode == "stdout-shots":
        count, size = int(argv[1]), int(argv[2])
        for i in range(count):
            data = base64.b64encode(payload(size, i)).decode("ascii")
            sys.stdout.write("##PROGRESS:" + json.dumps({"type": "screenshot", "name": f"s{i}.png", "data": data}) + "\n")
        sys.stdout.flush()
        return

    from bus.engine import Engine

    with Engine() as eng:
        if mode == "jobs":  # figure 13 (bench/queues.py)
            work = float(argv[1])
            for job in eng.jobs():
                got = time.time()
                spin(work)
                job.done({"n": job.payload.get("n"), "got": got})
            return
        if mode == "sdk-idle":
            threading.Event().wait()  # until SIGTERM (the SDK turns it into SystemExit)
        started = time.perf_counter()
        if mode == "sdk-progress":
            n = int(argv[1])
            for i in range(1, n + 1):
                eng.progress(done=i, total=n)
        elif mode == "sdk-paced":
            rate, seconds = float(argv[1]), float(argv[2])
            n = int(rate * seconds)
            t0 = time.perf_counter()
            for i in range(1, n + 1):
                due = t0 + i / rate
                while (left := due - time.perf_counter()) > 0:
                    time.sleep(left if left > 0.002 else 0)  # pacing a workload, not synchronising
                eng.progress(done=i, total=n)
        elif mode == "sdk-shots":
            count, size = int(argv[1]), int(argv[2])
            shots = [payload(size, i) for i in range(count)]
            started = time.perf_counter()
            for i, data in enumerate(shots):
                eng.screenshot(data, name=f"s{i}.png")
        emit = time.perf_counter() - started
    print(f"emit_seconds={emit:.6f}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main(sys.argv[1:])
