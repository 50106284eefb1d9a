"""A pool worker for the work-queue tests: takes jobs and does what each payload says.

payload keys: n (echoed in the result), sleep (seconds of work), fail (always raise),
block (a path: wait until it exists, so a test knows which jobs are in flight), progress (send one),
fail_unless (a path: fail while it does not exist), quit (done, then leave the loop).
WORKER_CREDIT in the environment: how many jobs one take may be given (default 1).
"""

import os
import time
from pathlib import Path

from bus.engine import Engine

with Engine() as eng:
    for job in eng.jobs(credit=int(os.environ.get("WORKER_CREDIT", "1"))):
        with job:
            p = job.payload
            if p.get("fail"):
                raise ValueError(f"job {p.get('n')} always fails")
            if p.get("fail_unless") and not Path(p["fail_unless"]).exists():
                raise RuntimeError(f"{p['fail_unless']} is not there yet")
            if p.get("block"):
                while not Path(p["block"]).exists():
                    time.sleep(0.01)
            if p.get("sleep"):
                time.sleep(p["sleep"])
            if p.get("progress"):
                eng.progress(1, 1, detail=str(p.get("n")))
            job.done({"n": p.get("n"), "pid": os.getpid(), "attempt": job.attempt})
        if p.get("quit"):
            break
