"""Test engine: floods progress until the bus stops taking it, then sends what
must never be dropped.

    python pressure.py GO_FIFO DROPPED_FIFO [KIND]

It waits for a line on GO_FIFO (the test has frozen the supervisor), sends
progress (or KIND: `log`) until some was dropped and 200 more, writes the drop count to
DROPPED_FIFO (the test then thaws the supervisor; with KIND log it waits
for a second line on GO_FIFO), and sends a final 100%
progress, a phase change and a result: those wait for room instead of being
dropped. Then it holds until SIGTERM.
"""

from __future__ import annotations

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bus.engine import Engine  # noqa: E402


def main() -> None:
    go, told = sys.argv[1], sys.argv[2]
    kind = sys.argv[3] if len(sys.argv) > 3 else "progress"
    with Engine() as eng:
        eng.phase_start("flood")
        with open(go) as fifo:
            fifo.readline()

        def one(done: int) -> None:
            if kind == "log":
                eng.log(f"item {done}")
            else:
                eng.progress(done=done, detail=f"item {done}")

        done = 0
        while eng.dropped == 0:
            done += 1
            one(done)
        for _ in range(200):
            done += 1
            one(done)
        with open(told, "w") as fifo:
            fifo.write(f"{eng.dropped} {done}\n")
        if kind == "log":  # (not droppable: after a timeout the SDK drops at once until a send gets through; go on when told)
            with open(go) as fifo:
                fifo.readline()
        eng.progress(pct=100.0, detail="all items")
        eng.phase_done("flood")
        eng.result(items=done)
        threading.Event().wait()


if __name__ == "__main__":
    main()
