"""Test engine that ignores SIGTERM, prints its pid, and waits to be killed."""

import os
import signal
import threading

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"stubborn {os.getpid()} ignoring SIGTERM", flush=True)
threading.Event().wait()
