"""Test engine that speaks the wire protocol by hand (raw zmq + msgpack, no SDK),
the way a program in another language would, following docs/PROTOCOL.md.

Its bye claims one more event than it delivered (one was garbage, rejected by
the supervisor) and 5 dropped events, so the supervisor must report both.
"""

import os
import time

import msgpack
import zmq

name = os.environ["BUS_ENGINE"]
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
push.setsockopt(zmq.LINGER, 5000)
push.connect(os.environ["BUS_ENDPOINT"])


def send(seq, kind, *blobs, **fields):
    header = {"v": 1, "kind": kind, "engine": name, "seq": seq, "ts": time.time(), **fields}
    push.send_multipart([msgpack.packb(header, use_bin_type=True), *blobs])


send(1, "hello", pid=os.getpid(), sdk="handmade/1")
send(2, "progress", phase="work", done=1, total=2)
push.send_multipart([b"\xc1 this one is garbage"])  # counted by us as sent, rejected by the supervisor
send(4, "screenshot", b"\x89PNG handmade", name="h.png", mime="image/png", size=13)
send(5, "bye", sent=4, dropped=5)
push.close()
ctx.term()
