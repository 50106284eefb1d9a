"""A local TCP session's address before its supervisor wrote supervisor.json (Windows, BUS_LOCAL_TCP=1):
its clients read the file at their first request, waiting that request's timeout, and say so in one line."""

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from bus.control_client import AsyncControlClient, ControlClient
from bus.errors import BusError, NotRunning
from bus.runtime import Address, Session, locate


def unlocated(tmp_path: Path) -> Address:
    return Address(control="", pub=None, label="session 'x'", session=Session("x", tmp_path))


def test_a_request_waits_its_timeout_for_the_file_and_says_no_answer(tmp_path: Path) -> None:
    with zmq.Context() as ctx:
        client = ControlClient(ctx, unlocated(tmp_path), timeout=0.3)
        began = time.monotonic()
        with pytest.raises(NotRunning, match=r"no answer from a supervisor at session 'x' within 0.3s"):
            client.request("hello")
        assert 0.3 <= time.monotonic() - began < 5
        client.close()
        with pytest.raises(BusError, match="is closed"):
            client.request("hello")  # (not quietly opened again after close)


def test_the_file_of_a_live_supervisor_locates_it_and_one_of_a_dead_pid_does_not(tmp_path: Path) -> None:
    info = {"pid": os.getpid(), "control": ["tcp://127.0.0.1:50001"], "pub": ["tcp://127.0.0.1:50002"], "pull": ["tcp://127.0.0.1:50003"], "token": "t"}
    (tmp_path / "supervisor.json").write_text(json.dumps(info))
    found = locate(unlocated(tmp_path), 0.0)
    assert found is not None and (found.control, found.pub, found.token) == ("tcp://127.0.0.1:50001", "tcp://127.0.0.1:50002", "t")
    (tmp_path / "supervisor.json").write_text(json.dumps({**info, "pid": 2**22 + 12345}))  # (above any pid_max: no such process)
    assert locate(unlocated(tmp_path), 0.0) is None


def test_a_cancelled_async_wait_for_the_file_leaves_no_thread_behind(tmp_path: Path) -> None:
    async def main() -> None:
        ctx = zmq.asyncio.Context()
        client = AsyncControlClient(ctx, unlocated(tmp_path), timeout=3600)
        threads = threading.active_count()
        began = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.request("hello", timeout=None), 0.2)
        assert time.monotonic() - began < 2
        assert threading.active_count() == threads  # (it waited on the loop, not in a worker thread still polling)
        client.close()
        ctx.term()

    asyncio.run(main())
