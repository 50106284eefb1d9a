"""`bus up` and `bus run`: an embedded supervisor plus a display of what it relays."""

from __future__ import annotations

from typing import Any

import click
import zmq

from bus.runtime import local_session
from supervisor import Supervisor, SupervisorConfig


def launch(config: SupervisorConfig, renderer: Any, *, announce: bool) -> int:
    """Run the engines until they are done (or we are stopped); return the exit code."""
    ctx = zmq.Context()
    try:
        if announce:
            session = local_session(config.session)
            click.echo(f"bus: {len(config.engines)} engine(s) in {session.label}; watch from elsewhere with `bus tail`", err=True)
        supervisor = Supervisor(config, ctx=ctx, sinks=[renderer.handle])
        return supervisor.run()
    finally:
        renderer.close()
        ctx.term()
