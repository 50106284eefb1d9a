"""Who sent a message: the CURVE key, the TCP peer, or a local (ipc) client."""

from __future__ import annotations

import zmq

from bus.keys import Gatekeeper


def user_id(frame: zmq.Frame) -> str | None:
    """The ZAP User-Id of the connection a frame came on (a CURVE client's public
    key, Z85), or None when it was not authenticated (ipc, or tcp without keys)."""
    try:
        return frame.get("User-Id") or None
    except zmq.ZMQError:
        return None


def source_of(frame: zmq.Frame, gatekeeper: Gatekeeper | None) -> str:
    key = user_id(frame)
    if key is not None and gatekeeper is not None:
        return f"key {gatekeeper.security.name_of(key)}"
    try:
        peer = frame.get("Peer-Address")
    except zmq.ZMQError:
        peer = ""
    if peer and not peer.startswith("localhost:"):  # libzmq names an ipc peer "localhost:UID:GID:PID"
        return f"tcp {peer}"
    return "local"
