"""`bus spawn [ADDRESS] [options] -- CMD ARGS...` and `bus forget NAME [ADDRESS]`."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import zmq

from bus import exitcodes
from bus.control_client import ControlClient
from bus.errors import UsageError
from bus.runtime import default_name, engine_name, resolve

from .common import Seconds, command_body, key_options
from .complete import complete_address, complete_engine


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--name", "-n", metavar="NAME", help="Engine name (default: the script's or program's name).")
@click.option("--instances", "-c", type=click.IntRange(1, 1000), metavar="N", help="How many instances (NAME.1 .. NAME.N).")
@click.option("--restart", type=click.Choice(["never", "on-failure", "always"]), help="Restart policy (default: never).")
@click.option("--stop-signal", metavar="SIGNAL", help="Signal that asks it to stop (default: SIGTERM).")
@click.option("--stop-timeout", type=Seconds(0, 86400, above=False), metavar="SECONDS", help="Grace between the stop signal and SIGKILL (default: the supervisor's).")
@click.option("--heartbeat-timeout", type=Seconds(0, 86400, above=False), metavar="SECONDS", help="Unresponsive after this long without a heartbeat (0: off; default 30).")
@click.option("--droppable", metavar="KINDS", help="Kinds its SDK may drop under pressure, comma-separated ('none' for none).")
@click.option("--env", "-e", "env", multiple=True, metavar="NAME=VALUE", help="A variable for it, over the supervisor's environment (repeatable).")
@click.option("--cwd", metavar="DIR", help="Its working directory (default: this one; over tcp://, the supervisor's).")
@click.option("--timeout", type=Seconds(), default=10.0, show_default=True, metavar="SECONDS", help="How long to wait for the supervisor's answer.")
@key_options
@click.argument("words", nargs=-1, required=True, type=click.UNPROCESSED, metavar="[ADDRESS] -- CMD [ARGS]...")
@command_body
def spawn(name: str | None, instances: int | None, restart: str | None, stop_signal: str | None, stop_timeout: float | None,
          heartbeat_timeout: float | None, droppable: str | None, env: tuple[str, ...], cwd: str | None, timeout: float, words: tuple[str, ...]) -> int:
    """Add an engine to a running supervisor and start it.

    ADDRESS is as for `bus status` (default: the local session). The engine
    is checked as a config file's engine is; a taken name, a bad setting or a
    program that is not there is one error, and nothing is started. Once
    started it is like any other engine: `bus status`, `bus tail`, `bus stop`,
    `bus restart`; `bus forget NAME` drops it once it has ended. Over TCP it
    needs an admin key. Exit code: 0 when it started, 1 when it could not be,
    3 when the supervisor refused it (nothing started), 5 without an admin key.

    \b
    Examples:
      bus up --keep &                  (a supervisor with no engines yet)
      bus spawn -- python worker.py --shard 3
      bus spawn tcp://10.0.0.5:7010 -n crawl -c 4 --restart on-failure -- ./crawl.sh
    """
    address, command = _split(words)
    table: dict[str, Any] = {"command": list(command)}
    if cwd is not None or not (address or "").startswith("tcp://"):  # (a supervisor elsewhere: its own directory, unless told)
        table["cwd"] = os.path.abspath(cwd or ".")
    for key, value in (("instances", instances), ("restart", restart), ("stop_signal", stop_signal), ("stop_timeout", stop_timeout), ("heartbeat_timeout", heartbeat_timeout)):
        if value is not None:
            table[key] = value
    if droppable is not None:
        table["droppable"] = [] if droppable.strip() == "none" else [k.strip() for k in droppable.split(",") if k.strip()]
    if env:
        table["env"] = dict(_variable(item) for item in env)
    engine = engine_name(name, "--name") if name else default_name(command)
    reply = _ask(address, timeout, "spawn", name=engine, engine=table)
    started = True
    for instance, said in reply["engines"].items():
        if said.get("error"):
            started = False
            click.echo(f"{instance}: {said['state']}: {said['error']}", err=True)
        elif said["pid"] is None:
            click.echo(f"{instance}: {said['state']} (it starts in the next passes: a start goes 50 at a time)")
        else:
            click.echo(f"{instance}: {said['state']} (pid {said['pid']})")
    return exitcodes.OK if started else exitcodes.ENGINE_FAILED


@click.command()
@click.argument("name", shell_complete=complete_engine)
@click.argument("address", required=False, shell_complete=complete_address)
@click.option("--timeout", type=Seconds(), default=10.0, show_default=True, metavar="SECONDS", help="How long to wait for the supervisor's answer.")
@key_options
@command_body
def forget(name: str, address: str | None, timeout: float) -> int:
    """Forget an engine that has ended (all its instances, or one), so its name is free again.

    \b
    Examples:
      bus forget crawl
      bus forget crawl.2 tcp://10.0.0.5:7010
    """
    reply = _ask(address, timeout, "forget", name=name)
    for instance in reply["forgotten"]:
        click.echo(f"{instance}: forgotten")
    return exitcodes.OK


def _ask(address: str | None, timeout: float, op: str, **args: Any) -> dict[str, Any]:
    with zmq.Context() as ctx:
        client = ControlClient(ctx, resolve(address), timeout=timeout)
        try:
            return client.request(op, **args)[0]
        finally:
            client.close()


def _split(words: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """[ADDRESS] -- CMD ARGS...: click drops the `--`, so find it on the command line itself."""
    argv = sys.argv[1:]
    if "--" not in argv:
        raise UsageError("give the command after --: bus spawn [ADDRESS] [options] -- CMD ARGS...")
    after = len(argv) - argv.index("--") - 1
    before, command = words[: len(words) - after], words[len(words) - after :]
    if not command:
        raise UsageError("no command after --: bus spawn [ADDRESS] [options] -- CMD ARGS...")
    if len(before) > 1 or (before and before[0].startswith("-")):
        raise UsageError(f"unexpected {' '.join(before)!r} before --: options go before --, and at most one ADDRESS")
    return (before[0] if before else None), command


def _variable(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise UsageError(f"--env {item!r}: write NAME=VALUE")
    return name, value
