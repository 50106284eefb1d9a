"""Who is connected to each bound socket, and a bound on TCP connections.

Why: libzmq accepts every TCP connection it is offered, and each holds a file
descriptor until its peer closes it or the handshake times out. Plain connects
that never handshake (no key, or not even ZMTP) used to fill the open-files
limit; then spawning engines failed, and the next local (ipc) connection
aborted the process: libzmq's ipc listener treats EMFILE as fatal (seen in
4.3.5 and its master: `Too many open files (src/ipc_listener.cpp:297)`).

How it works: each bound socket has a monitor (socket events), read by a thread
of its own, so refusals go on while the loop is busy or blocked (a paused
display). When a socket holds as many TCP connections as its bound, its listening
socket gets a socket filter that drops every incoming packet (Linux:
SO_ATTACH_FILTER; the kernel then answers no SYN, and clients retry as TCP
does), removed once it is below 90% of the bound again. A connection that was
accepted anyway beyond the bound (it was in the accept queue already, or the
platform has no such filter) is refused at once: shutdown() of the fd libzmq
reports (checked to be a TCP socket on that listener's port first: the number
may have been reused), so libzmq sees the peer gone and closes it. Refusals
are counted. The bound comes from the
open-files limit, which the supervisor raises to its hard limit at start
(`files`): half of what is left after a reserve for engines and our own files,
shared by the TCP sockets, so refusals always happen with descriptors to
spare. Connections that never finish their handshake are closed by libzmq
after sockets.HANDSHAKE_MS. Local clients (ipc, or without ipc the 127.0.0.1
endpoint) are counted, never refused: they are this user's own processes.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from bus.keys import HANDSHAKE_FAILED, monitor_messages

from .files import open_files, raise_files_limit

WATCHED = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPT_FAILED | HANDSHAKE_FAILED
RESERVE_FILES = 128       # descriptors kept for our own use: zmq internals, the journal, the watchdog, clients
FILES_PER_ENGINE = 4      # an engine's pipes (stdout, stderr), plus room while one spawns
MIN_CONNECTIONS = 16      # per TCP socket, whatever the limit says


@dataclass
class Listener:
    """What one bound socket has connected, by transport."""

    name: str                                            # pull, pub, control
    tcp: dict[int, str] = field(default_factory=dict)    # fd -> endpoint, TCP connections we let in
    local: set[int] = field(default_factory=set)         # fds of ipc connections
    ports: set[int] = field(default_factory=set)         # its TCP ports (to check a reported fd is one of its connections)
    own: frozenset[str] = frozenset()                    # its local endpoint when that is TCP (no ipc: 127.0.0.1), counted as local
    refused: int = 0                                     # TCP connections refused past the bound
    accept_failed: int = 0                               # accepts that failed in libzmq (e.g. out of descriptors)
    handshakes_failed: int = 0                           # TCP handshakes that failed (no key, wrong key, refused key, timed out)
    gates: list[socket.socket] = field(default_factory=list)  # its listening sockets (ours to filter, libzmq's to accept on)
    gated: bool = False                                  # new connections are dropped by the kernel just now
    told: bool = False                                   # it is full, and we said so
    closings: int = 0                                    # times it became full


class Connections:
    def __init__(self, say: Callable[[str], None] = lambda message: None) -> None:
        self.say = say  # a note for the loop to publish (called from the thread)
        self.listeners: dict[zmq.Socket, Listener] = {}  # monitor socket -> what it watches (the thread's own)
        self.limit, self.hard = raise_files_limit()
        self.max_tcp = MIN_CONNECTIONS                    # per TCP socket; set by `plan`
        self._lock = threading.Lock()                     # the counts, between the thread and status requests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def plan(self, engines: int, tcp_sockets: int) -> None:
        """The bound per TCP socket, from the files limit and the engines to run."""
        spare = self.limit - RESERVE_FILES - FILES_PER_ENGINE * engines
        self.max_tcp = max(MIN_CONNECTIONS, spare // (2 * max(1, tcp_sockets)))

    def watch(self, name: str, sock: zmq.Socket, endpoints: list[str]) -> None:
        """Monitor `sock` (bound to `endpoints`: the local one first, then --listen's) from now on
        (before `start`). The local one is ipc, or without ipc (Windows) TCP on 127.0.0.1: its
        connections are this user's processes too, counted as local, never refused or gated,
        so a flood of the --listen port cannot lock the local clients out."""
        monitor = sock.get_monitor_socket(WATCHED)
        own = frozenset(endpoints[:1]) if endpoints and endpoints[0].startswith("tcp://") else frozenset()
        ports = {int(e.rsplit(":", 1)[1]) for e in endpoints[1:] if e.startswith("tcp://")}
        self.listeners[monitor] = Listener(name, ports=ports, own=own, gates=listening_sockets(ports))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bus-connections", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        for monitor in self.listeners:
            poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for monitor, _ in poller.poll(200):
                    self.handle(monitor)
        finally:
            self._release()

    def handle(self, monitor: zmq.Socket) -> None:
        """Take what the monitor says: count, and refuse what is over the bound."""
        listener = self.listeners[monitor]
        for event, value, endpoint in monitor_messages(monitor):
            tcp = endpoint.startswith(b"tcp://") and endpoint.decode("ascii", "replace") not in listener.own
            with self._lock:
                if event == zmq.EVENT_ACCEPTED:
                    if not tcp:
                        listener.local.add(value)
                    elif len(listener.tcp) >= self.max_tcp and refuse(value, listener.ports):
                        listener.refused += 1
                    else:
                        listener.tcp[value] = endpoint.decode("ascii", "replace")
                elif event == zmq.EVENT_DISCONNECTED:
                    listener.tcp.pop(value, None)
                    listener.local.discard(value)
                elif event == zmq.EVENT_ACCEPT_FAILED:
                    listener.accept_failed += 1
                elif tcp:  # a failed handshake
                    listener.handshakes_failed += 1
        said = ""
        with self._lock:
            full = len(listener.tcp) >= self.max_tcp
            if full and not listener.told:
                listener.told, listener.gated = True, gate(listener.gates, True)
                listener.closings += 1
                how = "new ones are dropped" if listener.gated else "new ones are accepted and closed at once"
                said = f"bus: the {listener.name} socket holds {len(listener.tcp)} TCP connections, its bound (from the open-files limit {self.limit}): {how} until some close"
            elif listener.told and len(listener.tcp) < 0.9 * self.max_tcp:
                if listener.gated:
                    gate(listener.gates, False)
                listener.told = listener.gated = False
                said = f"bus: the {listener.name} socket takes TCP connections again ({listener.refused} refused so far)"
        if said:
            self.say(said)

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "max_tcp": self.max_tcp,
                "files": {"open": open_files(), "limit": self.limit, "hard": self.hard},
                **{l.name: {"tcp": len(l.tcp), "local": len(l.local), "refused": l.refused, "accept_failed": l.accept_failed, "full": l.told, "times_full": l.closings}
                   for l in self.listeners.values()},
            }

    def connected(self, *names: str) -> int:
        """How many peers are connected to these sockets now (pull, pub, control)."""
        with self._lock:
            return sum(len(l.tcp) + len(l.local) for l in self.listeners.values() if l.name in names)

    def handshakes_failed(self) -> dict[str, int]:
        with self._lock:
            return {l.name: l.handshakes_failed for l in self.listeners.values() if l.ports}

    def close(self) -> None:
        """Stop watching (the thread closes the monitors); before the sockets close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        else:
            self._release()

    def _release(self) -> None:
        for monitor, listener in self.listeners.items():
            monitor.close(linger=0)
            for sock in listener.gates:
                sock.detach()  # the listening fds stay libzmq's


def refuse(fd: int, ports: set[int]) -> bool:
    """Close the TCP connection libzmq reported as `fd` (shutdown: libzmq then drops it
    itself), if that fd still is a TCP connection on one of `ports`. No new descriptor is used."""
    try:
        conn = socket.socket(fileno=fd)
    except OSError:
        return False  # closed meanwhile
    try:
        if conn.type != socket.SOCK_STREAM or conn.family not in (socket.AF_INET, socket.AF_INET6) or conn.getsockname()[1] not in ports:
            return False  # the number was reused for something else
        conn.shutdown(socket.SHUT_RDWR)
        return True
    except OSError:
        return False
    finally:
        conn.detach()  # the fd stays libzmq's


# A classic BPF program of one instruction, "return 0": drop the packet.
_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)
_SO_ATTACH_FILTER, _SO_DETACH_FILTER = 26, 27  # Linux


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_CODE = (ctypes.c_ubyte * len(_DROP_ALL)).from_buffer_copy(_DROP_ALL)
_PROGRAM = bytes(_Program(1, ctypes.addressof(_CODE)))


def listening_sockets(ports: set[int]) -> list[socket.socket]:
    """The listening TCP sockets of this process on `ports` (Linux: found in /proc/self/fd),
    as socket objects over libzmq's fds, to put a filter on (detach them, never close them)."""
    if not ports or not sys.platform.startswith("linux"):
        return []
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=int(name))
        except (OSError, ValueError):
            continue
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) and sock.family in (socket.AF_INET, socket.AF_INET6)
            if listening and sock.getsockname()[1] in ports:
                found.append(sock)
                continue
        except OSError:
            pass
        sock.detach()
    return found


def gate(sockets: list[socket.socket], closed: bool) -> bool:
    """Drop (or again take) every new connection to these listening sockets; True if done."""
    try:
        for sock in sockets:
            if closed:
                sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, _PROGRAM)
            else:
                sock.setsockopt(socket.SOL_SOCKET, _SO_DETACH_FILTER, 0)
        return bool(sockets)
    except OSError:
        return False
