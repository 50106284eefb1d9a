"""`bus up`, `bus run` and `bus hub`: an embedded supervisor plus a display of what it relays.

The display is a sink inside the supervisor's loop: it sees every event, in
order, and never needs history. The price: if its output blocks (a paused
pager on `bus up | less`), the bus waits for it. `bus tail` is the view that
never slows the bus down.
"""

from __future__ import annotations

from typing import IO, Any, Callable

import click
import zmq

from bus.protocol import AnyEvent
from bus.supervisor import Supervisor, SupervisorConfig
from bus.supervisor.hub import Hub


def launch(config: SupervisorConfig, renderer: Any, *, announce: bool, make: Callable[[zmq.Context], Supervisor] | None = None, host: IO[bytes] | None = None) -> int:
    """Run the engines until they are done (or we are stopped); return the exit code.
    `make`: another kind of supervisor (bus hub). `host`: a pipe from the program that
    started us (bus.app); when it ends, everything stops (Supervisor.watch_host)."""
    ctx = zmq.Context()
    supervisor = make(ctx) if make is not None else Supervisor(config, ctx=ctx)
    if host is not None:
        supervisor.watch_host(host)

    def show(event: AnyEvent) -> None:
        if announce and event.kind == "sup.start":
            what = f"a hub of {len(supervisor.upstreams)} supervisor(s)" if isinstance(supervisor, Hub) else f"{len(config.engines)} engine(s)"
            click.echo(
                f"bus: {what} in {supervisor.session.label}; "
                "watch from elsewhere with `bus tail`, stop with Ctrl-C or `bus down`",
                err=True,
            )
        if renderer is not None:
            renderer.handle(event)

    if renderer is not None or announce:
        supervisor.sinks.append(show)
    if renderer is not None and hasattr(renderer, "flush"):
        supervisor.after_pass.append(renderer.flush)  # what the display buffered goes out once per pass of the loop
    try:
        code = supervisor.run()
        if supervisor.journal is not None and supervisor.journal.error:  # said when it happened; said again last, where it is seen
            click.echo(f"bus: {supervisor.journal.error}", err=True)
        return code
    finally:
        if renderer is not None:
            renderer.close()
        ctx.term()
