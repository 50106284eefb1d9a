"""An engine given a bad address says so in one line before anything connects."""

from __future__ import annotations

import pytest

from bus.protocol import LocalProtocolError
from bus.engine import Engine


@pytest.mark.parametrize("endpoint", ["tcp://", "tcp://x:99999", "tcp://:7010", "udp://x:1", "tcp://*:7010"])
def test_a_bad_endpoint_is_refused_by_name(endpoint: str) -> None:
    with pytest.raises(LocalProtocolError, match=r"^BUS_ENDPOINT '.*' is not an address like tcp://10.0.0.5:7010"):
        Engine("e", endpoint=endpoint, handle_sigterm=False)
