"""`bus web [ADDRESS]`: the live dashboard in a browser (the `web` extra)."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import sys

import click

from bus import exitcodes
from bus.errors import BusError, UsageError
from bus.keys import is_loopback
from bus.runtime import resolve

from .common import command_body, key_options
from .complete import complete_address

DEFAULT_PORT = 8700


@click.command()
@click.argument("address", required=False, shell_complete=complete_address)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to serve on.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="Port to serve on; 0 picks a free one (the URL is printed).")
@click.option("--public", is_flag=True, help="Allow a --host beyond loopback: anyone who reaches it sees every log and screenshot (no login).")
@key_options
@command_body
def web(address: str | None, host: str, port: int, public: bool) -> int:
    """Serve a live dashboard of a supervisor: a card per engine.

    ADDRESS is a session name (default: the local default session), a run
    directory, or tcp://HOST:PORT of a supervisor's control socket. The page
    shows each engine's state, phase, progress with rate and ETA, its last log
    lines, latest screenshot (click for full size), findings and result, and the
    supervisor's status. It follows the run live; a reload resumes from a
    snapshot; when the run ends it stays, and follows the next run at ADDRESS.
    The page's data is a JSON feed other web apps can read (docs/WEB.md).

    \b
    Examples:
      bus web                              http://127.0.0.1:8700/
      bus web --port 0                     any free port
      bus web tcp://10.0.0.5:7010 --server-key sup.key --key viewer.key_secret
    """
    try:
        from bus.web.server import serve
    except ImportError as exc:
        raise UsageError(f"bus web needs the web extra ({exc.name} is missing): pip install 'bus-orchestrator[web]'") from None
    if not is_loopback(host) and not public:
        raise UsageError(f"--host {host} is beyond loopback and the dashboard has no login: add --public to serve it anyway, or keep the default 127.0.0.1 and use an SSH tunnel")
    target = resolve(address)

    def ready(url: str) -> None:
        click.echo(f"bus web: serving {url} for {target.label} (Ctrl-C to stop)")
        sys.stdout.flush()

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        if hasattr(signal, "SIGTERM") and sys.platform != "win32":  # no add_signal_handler on Windows: Ctrl-C still works
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await serve(target, host, port, ready=ready)
        except asyncio.CancelledError:
            pass
        except socket.gaierror as exc:
            raise UsageError(f"cannot serve on {host}:{port}: no such host or address here ({exc.strerror}): give one of this machine's addresses to --host") from None
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise BusError(f"cannot serve on {host}:{port}: {exc.strerror}; pick another with --port (0 picks a free one)") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise BusError(f"cannot serve on {host}:{port}: that address is not on this host: give one of its own addresses to --host") from None
            raise

    asyncio.run(main())
    return exitcodes.OK
