"""`bus up`, `bus run` and `bus hub`: an embedded supervisor plus a display of what it relays.

The display is a sink inside the supervisor's loop: it sees every event, in
order, and never needs history. The price: if its output blocks (a paused
pager on `bus up | less`), the bus waits for it. `bus tail` is the view that
never slows the bus down.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import IO, Any, Callable, Iterator

import click
import zmq

from bus.errors import UsageError

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


@contextmanager
def metrics_served(listen: str | None, address: str | None, *, announce: bool) -> Iterator[None]:
    """`--metrics HOST:PORT`: /metrics of the supervisor at `address` (this process's session),
    served from a thread of this process for the block (bus/metrics.py); bound before it starts."""
    if listen is None:
        yield
        return
    try:
        from bus.metrics import MetricsServer, StatusCollector, listen_address, registry_for
    except ImportError as exc:
        if not (exc.name or "").startswith("prometheus_client"):
            raise
        raise UsageError("--metrics needs prometheus-client: install bus-orchestrator[metrics] (pip install 'bus-orchestrator[metrics]')") from None
    host, port = listen_address(listen)
    collector = StatusCollector(address)
    try:
        server = MetricsServer(registry_for(collector), host, port)
        try:
            if announce:
                click.echo(f"bus: metrics at {server.url}", err=True)
            yield
        finally:
            server.close()
    finally:
        collector.close()
