"""Test engine: an SDK engine whose work stops in one of several ways.

    python stillness.py MODE

MODE: hang (its main thread blocks for ever: the heartbeat thread still runs),
wait (it waits for ever, but declared: `with eng.waiting()`), spin (it
computes for ever without sending anything). Each first logs "working".
"""

from __future__ import annotations

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bus.engine import Engine  # noqa: E402


def main() -> None:
    mode = sys.argv[1]
    with Engine() as eng:
        eng.log("working")
        if mode == "hang":
            threading.Event().wait()
        elif mode == "wait":
            with eng.waiting():
                threading.Event().wait()
        elif mode == "spin":
            n = 0
            while True:
                n += 1


if __name__ == "__main__":
    main()
