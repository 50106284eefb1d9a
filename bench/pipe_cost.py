"""What one message waiting in a PULL socket's queue costs the receiving process.

    python bench/pipe_cost.py

A sender process pushes 5,000 messages of a size into a PULL that does not read
yet; the receiver's RSS growth per message is printed, for messages sent in a
burst (many arrive in one read) and paced (one per read, as an engine's batches
arrive when the supervisor keeps up with reading but not with taking). libzmq
4.3.5 decodes small messages in place in its 8 KiB receive buffer, which stays
allocated while any message in it is queued. Measured here (2 vCPUs, three runs;
"one per read" varies with how exact the pacing is):

    size 100 B:    burst 338-360 B,        one per read 3,929-8,339 B
    size 1,000 B:  burst 1,713-1,720 B,    one per read 5,784-9,248 B
    size 4,000 B:  burst 8,052-8,054 B,    one per read 8,669-12,182 B
    size 50,000 B: burst 50,083-50,085 B,  one per read 50,080-50,086 B

So a queue bounded in messages is bounded in bytes by count x max(about 8 KiB,
the largest message): why the supervisor's PULL high-water mark is 256 (bus/sockets.py,
docs/PERFORMANCE.md figure 6). A benchmark script, not a test: it waits for the
queue to settle by watching RSS.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import zmq

SENDER = r"""
import sys, time, zmq
ep, n, size, paced = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
c = zmq.Context(); p = c.socket(zmq.PUSH); p.setsockopt(zmq.SNDHWM, 0); p.connect(ep)
body = b"x" * size
for i in range(n):
    p.send(body)
    if paced:
        t = time.perf_counter() + 0.0002
        while time.perf_counter() < t: pass
p.send(b"END")
print("sent", flush=True)
sys.stdin.read()  # stays connected until told (a close could drop what is queued: hwm_stall.py)
"""


def rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def settled() -> int:
    """RSS once it has not moved for 0.3 s."""
    last, still = rss(), 0
    while still < 6:
        time.sleep(0.05)
        now = rss()
        still = still + 1 if now == last else 0
        last = now
    return last


def cost(n: int, size: int, paced: bool) -> float:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)
    endpoint = f"ipc://{tempfile.mkdtemp()}/p"
    pull.bind(endpoint)
    before = settled()
    sender = subprocess.Popen([sys.executable, "-c", SENDER, endpoint, str(n), str(size), "1" if paced else "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert sender.stdout is not None and sender.stdout.readline() == b"sent\n"
    after = settled()  # (what it sent is in our queue, or on its way from the kernel)
    got = 0
    while pull.poll(30_000) and pull.recv() != b"END":
        got += 1
    sender.communicate(b"")
    pull.close(0)
    ctx.term()
    if got != n:
        raise SystemExit(f"received {got} of {n}")
    return (after - before) / n


if __name__ == "__main__":
    for size in (100, 1000, 4000, 50000):
        for paced in (False, True):
            how = "one per read" if paced else "burst       "
            print(f"size {size:6,d} B  {how}  {cost(5000, size, paced):8,.0f} B per queued message")
