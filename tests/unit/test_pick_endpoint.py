"""Which of a hello's endpoints a client subscribes (or pushes) to, given the control endpoint it reached."""

import pytest

from bus.control_client import pick_endpoint
from bus.errors import BusError

LINUX = {  # ipc first, then --listen 0.0.0.0
    "control": ["ipc:///run/bus/s/ctl", "tcp://0.0.0.0:7001"],
    "pub": ["ipc:///run/bus/s/pub", "tcp://0.0.0.0:7002"],
    "pull": ["ipc:///run/bus/s/pull", "tcp://0.0.0.0:7003"],
}
WINDOWS = {  # no ipc: local TCP on 127.0.0.1 (random ports), then --listen 0.0.0.0
    "control": ["tcp://127.0.0.1:50001", "tcp://0.0.0.0:7001"],
    "pub": ["tcp://127.0.0.1:50002", "tcp://0.0.0.0:7002"],
    "pull": ["tcp://127.0.0.1:50003", "tcp://0.0.0.0:7003"],
}


def test_a_local_client_takes_the_local_entry():
    assert pick_endpoint(LINUX, "pub", "ipc:///run/bus/s/ctl") == "ipc:///run/bus/s/pub"
    assert pick_endpoint(WINDOWS, "pub", "tcp://127.0.0.1:50001") == "tcp://127.0.0.1:50002"
    assert pick_endpoint(WINDOWS, "pull", "tcp://127.0.0.1:50001") == "tcp://127.0.0.1:50003"


def test_a_remote_client_of_a_supervisor_without_ipc_takes_the_listen_entry_not_its_own_localhost():
    # (before: the first tcp entry, tcp://127.0.0.1:50002, which on the client's machine is nobody)
    assert pick_endpoint(WINDOWS, "pub", "tcp://10.0.0.5:7001") == "tcp://10.0.0.5:7002"
    assert pick_endpoint(WINDOWS, "pull", "tcp://host.example:7001") == "tcp://host.example:7003"
    assert pick_endpoint(LINUX, "pub", "tcp://10.0.0.5:7001") == "tcp://10.0.0.5:7002"


def test_a_listen_bound_to_one_address_is_taken_as_bound():
    eps = {"control": ["tcp://127.0.0.1:50001", "tcp://10.0.0.5:7001"], "pub": ["tcp://127.0.0.1:50002", "tcp://10.0.0.5:7002"]}
    assert pick_endpoint(eps, "pub", "tcp://10.0.0.5:7001") == "tcp://10.0.0.5:7002"
    assert pick_endpoint(eps, "pub", "tcp://bushost:7001") == "tcp://10.0.0.5:7002"  # (a name: by port)


def test_a_port_no_control_entry_has_takes_the_last_entry_as_behind_a_port_forward():
    # the client reached its own port 9001, forwarded to the supervisor's 7001
    assert pick_endpoint(WINDOWS, "pub", "tcp://127.0.0.1:9001") == "tcp://127.0.0.1:7002"
    assert pick_endpoint(LINUX, "pull", "tcp://gateway:9001") == "tcp://gateway:7003"
    # a forward whose port happens to be the supervisor's random local one is not taken for it
    assert pick_endpoint(WINDOWS, "pub", "tcp://gateway:50001") == "tcp://gateway:7002"


def test_no_reachable_entry_is_one_line():
    with pytest.raises(BusError, match="lists no local pub endpoint"):
        pick_endpoint(WINDOWS, "pub", "ipc:///run/bus/s/ctl")
    with pytest.raises(BusError, match="lists no pub endpoint reachable over TCP"):
        pick_endpoint({"control": ["ipc:///x/ctl"], "pub": ["ipc:///x/pub"]}, "pub", "tcp://10.0.0.5:7001")
