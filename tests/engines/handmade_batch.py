"""Test engine that sends batches by hand (raw zmq + msgpack, no SDK), as docs/PROTOCOL.md
section 3 describes them: a msgpack array of header maps in one frame.

It sends hello alone, then one batch of 6 elements whose fourth is not a map (rejected
as `not-a-map`; the other five are events 2..6), a screenshot alone (7), a batch of two
(8, 9) and its bye alone (10, saying 9 sent before it).
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


def header(seq, kind, **fields):
    return {"v": 1, "kind": kind, "engine": name, "seq": seq, "ts": time.time(), **fields}


def batch(*elements):
    push.send(msgpack.packb(list(elements), use_bin_type=True))


push.send(msgpack.packb(header(1, "hello", pid=os.getpid(), sdk="handmade-batch/1"), use_bin_type=True))
batch(
    header(2, "phase.start", phase="work"),
    header(3, "progress", phase="work", done=1, total=4),
    header(4, "log", message="from a batch", level="warning"),
    "not a map",
    header(5, "progress", phase="work", done=2, total=4),
    header(6, "finding", data={"n": 1, "raw": b"\x00\x01"}),
)
push.send_multipart([msgpack.packb(header(7, "screenshot", name="b.png", mime="image/png", size=5), use_bin_type=True), b"\x89PNG!"])
batch(header(8, "phase.done", phase="work"), header(9, "result", summary={"ok": True}))
push.send(msgpack.packb(header(10, "bye", sent=9), use_bin_type=True))
push.close()
ctx.term()
