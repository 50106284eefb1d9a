"""Test engine: replays a deterministic script through the real SDK.

Tests import `script()` to know exactly what was sent, then compare with what
subscribers received. Options make it misbehave on purpose.

    python scripted.py --events 200 --seed 1 --shots 4 [--threads 4] [--hold]
                       [--kill-self-after N [--kill-once FILE]] [--exit-code C] [--pace S] [--go FIFO]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SMALL_SHOT = 2_000
LARGE_SHOT = 200_000  # above the SDK's zero-copy threshold


def script(seed: int, events: int, shots: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The SDK calls the engine makes, in order (hello and bye come from the SDK itself)."""
    rng = random.Random(seed)
    steps: list[tuple[str, dict[str, Any]]] = [("phase_start", {"phase": "run", "detail": f"seed {seed}"})]
    every = max(1, events // shots) if shots else 0
    shot = 0
    for i in range(events):
        if every and i % every == every - 1 and shot < shots:
            size = LARGE_SHOT if shot % 2 else SMALL_SHOT
            steps.append(("screenshot", {"data": rng.randbytes(size), "name": f"shot{shot}.png"}))
            shot += 1
            continue
        r = i % 4
        if r == 0:
            steps.append(("progress", {"done": i + 1, "total": events, "detail": f"item {i}"}))
        elif r == 1:
            steps.append(("log", {"message": f"line {i} {rng.random():.6f}", "level": rng.choice(["info", "debug", "warning"])}))
        elif r == 2:
            steps.append(("finding", {"data": {"i": i, "score": rng.random(), "tags": ["a", "b"], "raw": rng.randbytes(8)}}))
        else:
            steps.append(("progress", {"pct": 100.0 * (i + 1) / events, "detail": ""}))
    steps.append(("phase_done", {"phase": "run"}))
    steps.append(("result", {"summary": {"events": events, "shots": shots, "seed": seed}}))
    return steps


def kind_of(method: str) -> str:
    return {"phase_start": "phase.start", "phase_done": "phase.done"}.get(method, method)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hold", action="store_true", help="after the script, wait for SIGTERM")
    parser.add_argument("--kill-self-after", type=int, default=-1, help="SIGKILL itself after N steps")
    parser.add_argument("--kill-once", metavar="FILE", help="with --kill-self-after: only when FILE does not exist yet (it is created)")
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--pace", type=float, default=0.0, help="spread the script over this many seconds")
    parser.add_argument("--go", metavar="FIFO", help="after hello, wait until one byte can be read from FIFO")
    args = parser.parse_args()

    from bus.engine import Engine

    with Engine() as eng:
        if args.go:
            fd = os.open(args.go, os.O_RDONLY)
            os.read(fd, 1)  # the test writes it once its subscribers are in
            os.close(fd)
        if args.threads > 1:
            run_threads(eng, args)
        else:
            steps = script(args.seed, args.events, args.shots)
            kill_at = args.kill_self_after
            if args.kill_once:
                if os.path.exists(args.kill_once):
                    kill_at = -1
                else:
                    open(args.kill_once, "w").close()
            for n, (method, kwargs) in enumerate(steps):
                if n == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                getattr(eng, method)(**kwargs)
                if args.pace and n % 50 == 49:
                    time.sleep(args.pace * 50 / len(steps))  # a workload shape, not a synchronisation
        print(f"scripted engine done: {eng.sent} sent, {eng.dropped} dropped, instance {os.environ.get('BUS_INSTANCE')}", flush=True)
        if args.hold:
            threading.Event().wait()  # until SIGTERM turns into SystemExit
    sys.exit(args.exit_code)


def run_threads(eng: Any, args: argparse.Namespace) -> None:
    """Each thread logs its own numbered lines: thread t, item i."""

    def work(t: int) -> None:
        for i in range(args.events):
            eng.log(f"t{t} i{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
