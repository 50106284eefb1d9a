"""Test engine: ignores SIGTERM and starts grandchildren that ignore it too.

Prints `engine PID` and `grandchild PID` lines (captured as log events), so a
test knows every process of the tree. Runs until killed.

    python tree.py --grandchildren 2 [--sdk]
"""

import argparse
import os
import signal
import subprocess
import sys
import threading

GRANDCHILD = "import signal, threading; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); threading.Event().wait()"

parser = argparse.ArgumentParser()
parser.add_argument("--grandchildren", type=int, default=2)
parser.add_argument("--sdk", action="store_true", help="also say hello through the SDK (and heartbeat)")
args = parser.parse_args()

signal.signal(signal.SIGTERM, signal.SIG_IGN)
engine = None
if args.sdk:
    from bus.engine import Engine

    engine = Engine(handle_sigterm=False)
kids = [subprocess.Popen([sys.executable, "-c", GRANDCHILD], stdout=subprocess.PIPE, text=True) for _ in range(args.grandchildren)]
for kid in kids:
    assert kid.stdout is not None and kid.stdout.readline().strip() == "ready"  # it ignores SIGTERM from now on
print(f"engine {os.getpid()}", flush=True)
for kid in kids:
    print(f"grandchild {kid.pid}", flush=True)
threading.Event().wait()
