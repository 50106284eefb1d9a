"""A libzmq 4.3.5 stall, shown in 30 lines: why PULL's high-water mark stays at 10,000.

    python bench/hwm_stall.py RCVHWM FRAMES MAXMSGSIZE SNDHWM [N]
    python bench/hwm_stall.py 1000 21 0 100000        # stalls: 150-2,500 of 100,000 never arrive (every run here)
    python bench/hwm_stall.py 5000 21 0 1000000 400000    # stalled too (1 run of 1)
    python bench/hwm_stall.py 10000 21 0 1000000 400000   # all arrived (4 runs of 4; rarer, not shown impossible)

One PUSH sends N messages (every 17th has FRAMES frames) and a sentinel to a PULL
read frame by frame in batches of 100, as the supervisor reads. With a low
RCVHWM and many-frame messages, the last messages stay in the pipe for good
(the reader polls 3 s with nothing, though the sender has sent everything).
Reported in docs/PERFORMANCE.md, figure 6.
"""
import sys, tempfile, threading, time, zmq
HWM = int(sys.argv[1]); FRAMES = int(sys.argv[2]); MAXSZ = int(sys.argv[3])
ctx = zmq.Context()
ENDPOINT = f"ipc://{tempfile.mkdtemp()}/stall.sock"
pull = ctx.socket(zmq.PULL)
pull.setsockopt(zmq.RCVHWM, HWM)
if MAXSZ: pull.setsockopt(zmq.MAXMSGSIZE, MAXSZ)
pull.bind(ENDPOINT)
N = int(sys.argv[5]) if len(sys.argv) > 5 else 100000
def flood():
    p = ctx.socket(zmq.PUSH); p.setsockopt(zmq.SNDHWM, int(sys.argv[4])); p.setsockopt(zmq.LINGER, 5000); p.connect(ENDPOINT)
    for i in range(N):
        if i % 17 == 0: p.send_multipart([b"x"] * FRAMES)
        else: p.send(b"garbage%d" % i)
    p.send(b"SENTINEL"); p.close()
t = threading.Thread(target=flood); t.start()
poller = zmq.Poller(); poller.register(pull, zmq.POLLIN)
got = 0; sentinel = False; last = time.time()
while not sentinel:
    if not dict(poller.poll(3000)):
        print("STALL at", got, "sender alive", t.is_alive(), "events", pull.getsockopt(zmq.EVENTS)); break
    for _ in range(100):
        try: f = pull.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again: break
        while pull.getsockopt(zmq.RCVMORE): pull.recv(copy=False)
        got += 1
        if f.bytes == b"SENTINEL": sentinel = True
    time.sleep(0.00002)
print("got", got, "sentinel", sentinel)
t.join(); ctx.destroy(0)
