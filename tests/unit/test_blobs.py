"""The publisher's image budget (supervisor/blobs.py), on real sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import zmq

from bus.sockets import PUB_HWM
from supervisor.blobs import BUDGET, MIN_COST, BlobBudget


def publish(pub: zmq.Socket, budget: BlobBudget, image: bytes) -> bool:
    if not budget.fits([image]):
        return False
    pub.send(b"screenshot/e", zmq.SNDMORE)
    pub.send(b"header", zmq.SNDMORE)
    budget.send(pub, [image])
    return True


@pytest.fixture
def stalled_pub(tmp_path: Path) -> Iterator[zmq.Socket]:
    """A publisher as the supervisor's, with one subscriber that reads nothing."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, PUB_HWM)  # as the supervisor's: its queue for the stalled one holds 10,000
    pub.bind(f"ipc://{tmp_path}/pub")
    stalled = ctx.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect(f"ipc://{tmp_path}/pub")
    try:
        assert pub.poll(10_000), "the subscription never arrived"
        assert pub.recv() == b"\x01"
        yield pub
    finally:
        stalled.close(0)
        pub.close(0)
        ctx.term()


def test_a_stalled_subscriber_holds_at_most_the_budget(stalled_pub: zmq.Socket) -> None:
    budget = BlobBudget()
    image = b"x" * (1 << 20)
    sent = [publish(stalled_pub, budget, image) for _ in range(200)]  # 200 MiB for a queue that takes none of it
    assert sent[0] and not all(sent), "past the budget, images are withheld"
    assert budget.withheld == sent.count(False) > 100
    assert budget.held <= BUDGET + len(image)


def test_empty_or_tiny_images_cannot_pile_up_trackers(stalled_pub: zmq.Socket) -> None:
    budget = BlobBudget()
    most = 0
    for n in range(20_000):
        publish(stalled_pub, budget, b"" if n % 2 else b"tiny")
        most = max(most, len(budget._out))
    assert most <= BUDGET // MIN_COST + 1, "each image counts at least MIN_COST"
    assert budget.withheld > 0
