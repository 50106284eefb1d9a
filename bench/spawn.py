"""Figure 12: from `spawn` to the engine's first event, beside `subprocess.Popen` to its first line.

The same command both ways (a Python that prints one line). Ours is the
application API against a private supervisor started once (bus.app): the
spawn request, the supervisor's fork and exec, the engine's line read from its
pipe, made an event, numbered and published, and received by the program:
- "live": by a subscriber already following the supervisor (what a dashboard sees);
- "handle": through `handle.events()` opened after the spawn, the way an
  application writes it (its subscription, the welcome, the history catch-up).
Medians of N runs taken in turn, so drift hits both alike.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

from bus.app import Bus

COMMAND = [sys.executable, "-c", "print('first', flush=True)"]


def popen_first_line() -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(COMMAND, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    took = time.perf_counter() - t0
    proc.wait()
    proc.stdout.close()
    return took


def spawn_first_event_live(bus: Bus, sub: Any, k: int) -> float:
    name = f"live-{k}"
    t0 = time.perf_counter()
    bus.spawn(COMMAND, name=name, heartbeat_timeout=0)
    while True:
        event = sub.recv(timeout=30)
        if event is not None and event.engine == name and event.kind == "log":
            return time.perf_counter() - t0


def spawn_first_event_handle(bus: Bus, k: int) -> float:
    t0 = time.perf_counter()
    handle = bus.spawn(COMMAND, name=f"handle-{k}", heartbeat_timeout=0)
    events = handle.events()
    try:
        for event in events:
            if event.kind == "log":
                return time.perf_counter() - t0
    finally:
        events.close()
    raise RuntimeError(f"{handle.name} ended without its line")


def measure(runs: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"popen": [], "live": [], "handle": []}
    with Bus.start(stop_timeout=2) as bus:
        with bus.subscriber(history=0) as sub:
            sub.wait_ready(timeout=30)
            for k in range(runs):
                times["popen"].append(popen_first_line())
                times["live"].append(spawn_first_event_live(bus, sub, k))
                times["handle"].append(spawn_first_event_handle(bus, k))
    med = {name: 1000 * statistics.median(values) for name, values in times.items()}
    return {
        "runs": runs,
        "Popen to first line ms": med["popen"],
        "spawn to first event, live subscriber ms": med["live"],
        "spawn to first event, handle.events() ms": med["handle"],
        "live / Popen": med["live"] / med["popen"],
        "handle / Popen": med["handle"] / med["popen"],
    }
