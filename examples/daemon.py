"""Demo daemon for examples/panels.py (seed 004's `monitor run` and `agent start`): runs until stopped.

Prints a line per step and a `##PROGRESS:` marker per cycle, as such daemons
do, with no bus code at all; SIGTERM ends it after the step at hand.

    python daemon.py monitor --interval 0.5
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

STEPS = {"monitor": ["checked web-1: up", "checked web-2: up", "checked db-1: replication lag 0.2s", "checked queue: 3 waiting"],
         "agent": ["picked task", "planning", "ran tool: search", "ran tool: edit", "task done"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=sorted(STEPS))
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    steps, cycle = STEPS[args.role], 0
    print(f"{args.role} started", flush=True)
    while not stop.is_set():
        cycle += 1
        for n, step in enumerate(steps, 1):
            print(f"{args.role} cycle {cycle}: {step}", flush=True)
            print("##PROGRESS:" + json.dumps({"phase": f"cycle {cycle}", "pct": round(100 * n / len(steps), 1), "detail": step}), flush=True)
            if stop.wait(args.interval):
                break
    print(f"{args.role} stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
