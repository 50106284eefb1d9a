"""`bus attach ADDRESS -- CMD`: run a command here as a remote engine of a supervisor elsewhere.

How it works: ask the supervisor's `hello` (an engine key may) where its PULL
endpoint is, connect a PUSH socket there and wait for the handshake, so a key
the supervisor refuses is one clear line before anything runs. Then start the
command with the bus variables (BUS_ENDPOINT, BUS_ENGINE, BUS_HEARTBEAT, and
the CURVE keys already in the environment) so its SDK connects by itself, and
speak for it on our own connection (events with `seq` nil):

- a `hello` naming its pid, host and our heartbeat, which attaches it;
- a `heartbeat` every `heartbeat` seconds while it runs, so its crash, or
  ours, or the host's, shows as `lost` within three times that;
- its stdout and stderr lines, as the supervisor would capture them (legacy
  `##PROGRESS:` markers become their events), also echoed here;
- its `exit` (code or signal) when it ends.

Our own stop signals (SIGTERM, SIGINT, SIGHUP) go to the command's process
group; we exit with its exit code (128 + N when signal N killed it).
"""

from __future__ import annotations

import os
import signal
import socket as stdsocket
import subprocess
import sys
import time
from typing import Any, Callable

import zmq

from . import exitcodes, sockets
from ._version import __version__
from .control_client import ControlClient, pick_endpoint
from .errors import BusError, Denied
from .keys import HANDSHAKE_FAILED, describe_failure, monitor_events
from .process import MAX_LINE, POSIX, Inbox, OutputLines, ProcessExited, StreamClosed, exit_info, helper_thread, own_group, read_lines, signal_group, wait_exit
from .protocol import EngineExited, EngineHello, Event, Heartbeat, encode
from .protocol.legacy import line_event
from .runtime import Address

LINGER = 3.0  # seconds to deliver the last events when the command has ended


def attach(address: Address, command: tuple[str, ...], *, name: str, heartbeat: float, timeout: float, echo: Callable[[str, str], None]) -> int:
    """Run `command` as remote engine `name` of the supervisor at `address`; return its exit code."""
    ctx = zmq.Context()
    push = None
    try:
        control = ControlClient(ctx, address, timeout=timeout)
        try:
            reply, _ = control.request("hello", engine=name)
        finally:
            control.close()
        if reply.get("engine") == "supervised":
            raise BusError(f"the supervisor at {address.label} runs an engine named {name!r} itself: attach under another name (-n NAME)")
        endpoint = pick_endpoint(reply["endpoints"], "pull", control.address.control)
        push = sockets.push(ctx, endpoint, linger_ms=int(LINGER * 1000), keys=address.keys if endpoint.startswith("tcp://") else None)
        _wait_handshake(push, endpoint, address, timeout)
        return _Run(push, command, name=name, heartbeat=heartbeat, endpoint=endpoint, echo=echo).run()
    finally:
        if push is not None:
            push.close()
        ctx.term()  # waits (at most LINGER) for the last events to go out


def _wait_handshake(push: zmq.Socket, endpoint: str, address: Address, timeout: float) -> None:
    """Return once the supervisor's PULL admitted us; BusError (one line) if it refused or never answered."""
    monitor = push.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED)
    try:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not monitor.poll(int(left * 1000) + 1):
                break
            for event in monitor_events(monitor):
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    return
                if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and address.keys is not None:
                    raise Denied(f"the supervisor at {endpoint} refused key {address.keys.name!r} for pushing events: "
                                 "its public key (NAME.key) must be in the supervisor's engines role (docs/SECURITY.md)")
                raise Denied(describe_failure(event, endpoint, address.keys) or f"the handshake with {endpoint} failed")
        raise BusError(f"no handshake with the supervisor's pull endpoint {endpoint} within {timeout:g}s: is that port open from here? (docs/DEPLOY.md)")
    finally:
        push.disable_monitor()
        monitor.close(linger=0)


class _Run:
    def __init__(self, push: zmq.Socket, command: tuple[str, ...], *, name: str, heartbeat: float, endpoint: str, echo: Callable[[str, str], None]) -> None:
        self.push, self.command, self.name, self.heartbeat, self.endpoint, self.echo = push, command, name, heartbeat, endpoint, echo
        self.undelivered = 0  # our own events the socket had no room for

    def run(self) -> int:
        env = dict(os.environ)
        for ours in ("BUS_SPOOL", "BUS_INSTANCE", "BUS_SESSION_DIR"):
            env.pop(ours, None)
        env.update(BUS_ENDPOINT=self.endpoint, BUS_ENGINE=self.name, BUS_HEARTBEAT=f"{self.heartbeat:g}", PYTHONUNBUFFERED="1")
        try:
            proc = subprocess.Popen(list(self.command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **own_group())
        except OSError as exc:
            code = exitcodes.COMMAND_NOT_FOUND if isinstance(exc, FileNotFoundError) else 126  # (126: not executable, as a shell says)
            error = BusError(f"cannot start {self.command[0]}: {exc.strerror or exc}")
            error.exit_code = code
            raise error from None
        started = time.time()

        def forward(signum: int, frame: Any) -> None:
            if POSIX:
                signal_group(proc.pid, signal.SIGTERM if signum == signal.SIGHUP else signum)
            elif proc.returncode is None:  # pragma: no cover - Windows
                proc.send_signal(signal.CTRL_BREAK_EVENT)

        old = {s: signal.signal(s, forward) for s in _FORWARDED}
        try:
            self._send(EngineHello(engine=self.name, pid=proc.pid, sdk=f"bus-attach/{__version__}", host=stdsocket.gethostname(), heartbeat=self.heartbeat))
            inbox = Inbox()
            for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                helper_thread(f"attach-{stream}", read_lines, None, stream, pipe, inbox, MAX_LINE)  # cut where the supervisor cuts its own engines' lines
            helper_thread("attach-wait", wait_exit, None, proc, inbox)
            open_streams, returncode, ended = 2, None, 0.0
            next_beat = time.monotonic() + self.heartbeat
            while open_streams or returncode is None:
                wait = max(0.0, next_beat - time.monotonic())
                if zmq.select([inbox.fileno()], [], [], wait)[0]:
                    for item in inbox.drain():
                        if isinstance(item, OutputLines):
                            for text, cut, ts in item.lines:
                                self.echo(item.stream, text)
                                self._send(line_event(self.name, item.stream, text, cut, ts)[0])
                        elif isinstance(item, StreamClosed):
                            open_streams -= 1
                        elif isinstance(item, ProcessExited):
                            returncode, ended = item.code, item.at
                if time.monotonic() >= next_beat:
                    self._send(Heartbeat(engine=self.name))
                    next_beat = time.monotonic() + self.heartbeat
            info = exit_info(returncode, ended)
            self._send(EngineExited(engine=self.name, ts=ended, pid=proc.pid, code=info.code, signal=info.signal, signame=info.signame, runtime=max(0.0, ended - started)), wait=True)
            inbox.close()
        finally:
            for signum, handler in old.items():
                signal.signal(signum, handler)
        if self.undelivered:
            print(f"bus attach: {self.undelivered} event(s) of ours (output lines, heartbeats) found no room to the supervisor and were dropped", file=sys.stderr)
        return info.code if info.signal is None else 128 + info.signal

    def _send(self, event: Event, *, wait: bool = False) -> None:
        """Never hold up the command: what finds no room is counted and dropped (the exit waits up to LINGER for room)."""
        if wait:
            self.push.poll(int(LINGER * 1000), zmq.POLLOUT)
        try:
            self.push.send_multipart(encode(event), zmq.NOBLOCK)
        except zmq.Again:
            self.undelivered += 1


_FORWARDED = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])


