"""`bus status [ADDRESS]` and `bus down [ADDRESS]`"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
import zmq
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bus import exitcodes
from bus.control_client import ControlClient
from bus.runtime import resolve

from .common import Seconds, command_body, events_until, key_options, watching
from .complete import complete_address
from .jobs import print_queues
from .render import printable


@click.command()
@click.argument("address", required=False, shell_complete=complete_address)
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.option("--timeout", type=Seconds(), default=3.0, show_default=True, metavar="SECONDS", help="How long to wait for an answer.")
@key_options
@command_body
def status(address: str | None, as_json: bool, timeout: float) -> int:
    """Show a running supervisor's engines and counters.

    \b
    Examples:
      bus status
      bus status --json
      bus status tcp://10.0.0.5:7010
    """
    with zmq.Context() as ctx:
        client = ControlClient(ctx, resolve(address), timeout=timeout)
        try:
            reply, _ = client.request("status")
        finally:
            client.close()
    if as_json:
        reply.pop("v", None)
        reply.pop("id", None)
        reply.pop("ok", None)
        click.echo(json.dumps(reply, indent=2))
    else:
        print_status(reply)
    return exitcodes.OK


def print_status(reply: dict[str, Any]) -> None:
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"run {reply['run']}  pid {reply['pid']}  up {_duration(reply['uptime'])}", title_justify="left")
    for column in ("engine", "inst", "pid", "state", "uptime", "restarts", "phase / progress", "events", "drops", "last exit / reason"):
        justify = "right" if column in ("inst", "pid", "restarts", "events", "drops") else "left"
        table.add_column(column, justify=justify, no_wrap=column == "engine", overflow="fold")
    for engine in reply["engines"]:
        where = f"{engine['origin']}/" if engine.get("origin") else ""  # relayed by a hub
        table.add_row(
            where + engine["engine"] + (" (remote)" if engine.get("remote") else ""),
            str(engine["instance"]) if (engine["instances"] or 1) > 1 else "",
            str(engine["pid"] or "") if engine["state"] in LIVE else "",
            Text(engine["state"], STATE_STYLE.get(engine["state"], "")),
            _duration(engine["uptime"]) if engine["state"] in LIVE else "",
            str(engine["restarts"]),
            Text(printable(_phase(engine))),
            str(engine["events"]),
            str(engine["dropped"] + engine["lost"]),
            Text(printable(_last(engine))),
        )
    console.print(table)
    if reply.get("queues"):
        print_queues(console, reply["queues"])
    for up in reply.get("upstreams") or []:  # a hub: the supervisors it follows
        said = f"run {up['run']}, {up['relayed']} events relayed" if up["run"] else "no run seen yet"
        why = f": {up['reason']}" if up["reason"] else ""
        console.print(Text(printable(f"upstream {up['origin']} at {up['address']}: {up['state']}{why} ({said})"), "bold red" if up["state"] == "lost" else ""))
    counters = reply["counters"]
    rejects = ", ".join(f"{reason} {n}" for reason, n in sorted(reply["rejects"].items())) or "none"
    console.print(
        f"events received {counters['received']}, accepted {counters['accepted']}, rejected {counters['rejected']} "
        f"({rejects}); published {counters['published']}; history holds {reply['history']['events']}"
    )
    sources = reply.get("reject_sources") or {}
    if sources:
        by = "; ".join(f"{source}: {sum(counts.values())}" for source, counts in sorted(sources.items()))
        console.print(Text(f"rejected by source: {by}"))
    security = reply.get("security") or {}
    if security.get("curve"):
        clients = ", ".join(f"{role} {len(names)}" for role, names in security["clients"].items())
        refused = sum(security.get("refused", {}).values())
        failed = sum(security.get("handshakes_failed", {}).values())
        console.print(Text(f"tcp: CURVE keys ({clients}); keys refused {refused}, failed handshakes {failed}"))
    elif security.get("insecure"):
        console.print(Text("tcp: INSECURE, listening beyond loopback without keys", "bold red"))
    if reply.get("stopping"):
        console.print(Text(f"stopping: {reply['stopping']}"))


LIVE = {"starting", "running", "unresponsive", "stopping"}
STATE_STYLE = {"running": "green", "unresponsive": "bold red", "fatal": "bold red", "lost": "bold red", "backoff": "yellow", "stopping": "yellow"}


def _phase(engine: dict[str, Any]) -> str:
    progress = engine["progress"] or {}
    pct = f" {progress['pct']:.0f}%" if progress.get("pct") is not None else ""
    return f"{engine['phase'] or progress.get('phase') or ''}{pct}".strip()


def _last(engine: dict[str, Any]) -> str:
    if engine["error"]:
        return engine["error"]
    exit_ = engine["exit"]
    how = "" if exit_ is None else (f"code {exit_['code']}" if exit_["signal"] is None else exit_["signame"])
    if engine["state"] in ("fatal", "backoff", "unresponsive", "lost"):
        return engine["reason"]  # it says how the last process ended too
    return how


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


@click.command()
@click.argument("address", required=False, shell_complete=complete_address)
@click.option("--timeout", type=Seconds(), default=60.0, show_default=True, metavar="SECONDS", help="How long to wait for the run to end.")
@key_options
@command_body
def down(address: str | None, timeout: float) -> int:
    """Stop a running supervisor gracefully and wait until it has stopped.

    Engines get SIGTERM, then SIGKILL after the supervisor's stop timeout;
    their last events are still relayed.

    \b
    Examples:
      bus down
      bus down tcp://10.0.0.5:7010
    """
    deadline = time.monotonic() + timeout
    with watching(address, ["sup.stop"]) as sub:
        reply, _ = sub.control.request("down")
        if reply.get("finished"):
            click.echo(f"bus down: {sub.address.label} had already stopped", err=True)
            return exitcodes.OK
        for event in events_until(sub, deadline):
            if event.kind == "sup.stop":
                click.echo(f"bus down: stopped {sub.address.label} (exit code {event.fields()['code']})", err=True)  # type: ignore[union-attr]
                return exitcodes.OK
    click.echo(f"bus down: {sub.address.label} did not stop within {timeout:g}s", err=True)
    return exitcodes.ENGINE_FAILED
