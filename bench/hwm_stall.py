"""A libzmq 4.3.5 loss, shown in 30 lines: a PUSH closed while its receiver's queue is full.

    python bench/hwm_stall.py RCVHWM FRAMES MAXMSGSIZE SNDHWM [N [HOLD]]
    python bench/hwm_stall.py 64 1 0 1000 100000        # 350-900 of 100,000 never arrive (5 runs of 6 here)
    python bench/hwm_stall.py 1000 21 0 100000          # 2,240 never arrived (1 run)
    python bench/hwm_stall.py 64 1 0 1000 100000 5      # the sender stays open 5 s after its last send: all arrive (4 of 4)

One PUSH sends N messages (every 17th has FRAMES frames) and a sentinel to a PULL
read frame by frame in batches of 100, as the supervisor reads, then closes its
socket (linger 5 s) and terminates its own context. When the PULL's queue is at
its high-water mark at that moment, what the PUSH still held is gone: its context
terminates at once (1 ms, the linger ignored) and the reader polls with nothing
more to read. Frames per message do not matter (it happens with 1); keeping the
sender open (HOLD) does: then everything arrives. Reported upstream as
zeromq/libzmq#4660 (open). Bus is not exposed where it matters: an SDK engine's
crash spool holds whatever the supervisor has not received (it is read when no
bye came), and PROTOCOL.md tells other senders. Reported in docs/PERFORMANCE.md.
"""
import sys, tempfile, threading, time, zmq
HWM = int(sys.argv[1]); FRAMES = int(sys.argv[2]); MAXSZ = int(sys.argv[3])
N = int(sys.argv[5]) if len(sys.argv) > 5 else 100000
HOLD = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
ctx = zmq.Context()
ENDPOINT = f"ipc://{tempfile.mkdtemp()}/stall.sock"
pull = ctx.socket(zmq.PULL)
pull.setsockopt(zmq.RCVHWM, HWM)
if MAXSZ: pull.setsockopt(zmq.MAXMSGSIZE, MAXSZ)
pull.bind(ENDPOINT)
def flood():
    own = zmq.Context()  # the sender's own context, as an engine process has
    p = own.socket(zmq.PUSH); p.setsockopt(zmq.SNDHWM, int(sys.argv[4])); p.setsockopt(zmq.LINGER, 5000); p.connect(ENDPOINT)
    for i in range(N):
        if i % 17 == 0: p.send_multipart([b"x"] * FRAMES)
        else: p.send(b"garbage%d" % i)
    p.send(b"SENTINEL"); time.sleep(HOLD)
    t0 = time.perf_counter(); p.close(); own.term()
    print(f"sender: close and term took {time.perf_counter() - t0:.3f} s")
t = threading.Thread(target=flood); t.start()
poller = zmq.Poller(); poller.register(pull, zmq.POLLIN)
got = 0; sentinel = False
while not sentinel:
    if not dict(poller.poll(3000 + 1000 * HOLD)):
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
