"""`bus attach [ADDRESS] [--name N] -- CMD ARGS...`"""

from __future__ import annotations

import sys

import click

from bus.attach import attach as run_attached
from bus.errors import UsageError
from bus.runtime import default_name, engine_name, resolve

from .common import Seconds, command_body, key_options
from .complete import complete_address


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--name", "-n", metavar="NAME", help="Engine name at the supervisor (default: the script's or program's name); make it unique, e.g. worker-$SLURM_PROCID.")
@click.option("--heartbeat", type=Seconds(0, 3600), default=2.0, show_default=True, metavar="SECONDS", help="How often we tell the supervisor the engine is alive; it reports the engine lost after three times as long without word.")
@click.option("--timeout", type=Seconds(), default=10.0, show_default=True, metavar="SECONDS", help="How long to wait for the supervisor to answer and admit us.")
@key_options
@click.argument("address", shell_complete=complete_address)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@command_body
def attach(name: str | None, heartbeat: float, timeout: float, address: str, command: tuple[str, ...]) -> int:
    """Run a command here as a remote engine of a supervisor (here or on another host).

    ADDRESS is the supervisor's control address (tcp://HOST:PORT, as given to
    its --listen) or a local session name. The command gets BUS_ENDPOINT and
    BUS_ENGINE, so the engine SDK connects by itself; its output lines are
    shown here and sent along (legacy ##PROGRESS: markers become events), and
    its exit is reported. The supervisor lists it as remote and cannot signal
    it: stop it here (Ctrl-C or SIGTERM reach the command). Over TCP with keys,
    give an engine key (--key, or BUS_KEY) and the supervisor's public key
    (--server-key, or BUS_SERVER_KEY). Exit code: the command's.

    \b
    Examples:
      bus attach tcp://10.0.0.5:7010 -- python worker.py --shard 3
      BUS_SERVER_KEY=server.key BUS_KEY=eng.key_secret bus attach tcp://head:7010 -n crawl-7 -- ./crawl.sh
    """
    if address.startswith("-"):
        raise UsageError(f"unknown option {address}: options go before ADDRESS and --")
    engine = engine_name(name, "--name") if name else default_name(command)
    return run_attached(resolve(address), command, name=engine, heartbeat=heartbeat, timeout=timeout, echo=_echo)


def _echo(stream: str, text: str) -> None:
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.write(text + "\n")
    out.flush()
