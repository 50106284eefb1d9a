"""`bus start|stop|restart NAME [ADDRESS]`: act on an engine (all its instances) or one instance."""

from __future__ import annotations

import time
from typing import Any

import click

from bus import exitcodes
from bus.subscriber import Subscriber

from .common import Seconds, command_body, events_until, key_options, watching
from .complete import complete_address, complete_engine

# What each command waits for: the states that end the wait for an instance,
# and whether they count only after a new process was seen starting.
ENDS = {"start": ({"running", "exited", "fatal"}, True), "stop": ({"exited", "fatal"}, False), "restart": ({"running", "exited", "fatal"}, True)}
GOOD = {"start": {"running"}, "stop": {"exited", "fatal"}, "restart": {"running"}}
IN_TRANSITION = ("starting", "stopping")


def _command(op: str, summary: str, example: str) -> click.Command:
    @click.command(name=op, help=f"""{summary}

    NAME is an engine (all its instances) or one instance such as audit.2.
    ADDRESS is as for `bus status`. Waits until done (--no-wait: at once);
    exits 0 when every instance got there, 1 when one did not.

    \b
    Examples:
      bus {op} {example}
      bus {op} {example} tcp://10.0.0.5:7010
    """)
    @click.argument("name", shell_complete=complete_engine)
    @click.argument("address", required=False, shell_complete=complete_address)
    @click.option("--wait/--no-wait", default=True, help="Wait until the instances got there (default).")
    @click.option("--timeout", type=Seconds(), default=60.0, show_default=True, metavar="SECONDS", help="How long to wait.")
    @key_options
    @command_body
    def command(name: str, address: str | None, wait: bool, timeout: float) -> int:
        return act(op, name, address, wait=wait, timeout=timeout)

    return command


def act(op: str, name: str, address: str | None, *, wait: bool, timeout: float) -> int:
    with watching(address, ["state", "sup.stop"]) as sub:
        reply, _ = sub.control.request(op, name=name)
        engines: dict[str, str] = reply["engines"]
        outcome: dict[str, dict[str, Any]] = reply.get("outcome") or _outcome_in_words(engines)
        states = {name: said["state"] for name, said in outcome.items()}
        final, lines = _wait(sub, op, outcome, engines, time.monotonic() + timeout) if wait else (states, engines)
    for instance, line in lines.items():
        click.echo(f"{instance}: {line}")
    if not wait:
        return exitcodes.OK
    done = all(not outcome[name]["remote"] and (state in GOOD[op] or outcome[name]["already"]) for name, state in final.items())
    return exitcodes.OK if done else exitcodes.ENGINE_FAILED


def _outcome_in_words(engines: dict[str, str]) -> dict[str, dict[str, Any]]:
    """What a supervisor before 0.2 (no `outcome` in its reply) said, from its words."""
    return {name: {"state": "" if text.startswith("remote:") else text.removeprefix("already ").split(" ")[0],
                   "already": text.startswith("already "), "remote": text.startswith("remote:")} for name, text in engines.items()}


def _wait(sub: Subscriber, op: str, outcome: dict[str, dict[str, Any]], said: dict[str, str], deadline: float) -> tuple[dict[str, str], dict[str, str]]:
    """Follow state events until every instance that was on its way got there: the states
    each ended in, and the line to show for each (the reply's words, or where it got)."""
    ends, after_spawn = ENDS[op]
    final, lines = {name: o["state"] for name, o in outcome.items()}, dict(said)
    moving = {name for name, o in outcome.items() if not o["already"] and not o["remote"]}  # (one already there, or not ours to signal, is not waited for)
    pending = {name for name in moving if final[name] in IN_TRANSITION}
    spawned = {name for name in moving if final[name] == "starting"}
    for event in events_until(sub, deadline) if pending else ():
        if event.kind != "state" or event.engine not in pending:
            continue
        fields: dict[str, Any] = event.fields()  # type: ignore[union-attr]
        if fields["state"] == "starting":
            spawned.add(event.engine)
        elif fields["state"] in ends and (event.engine in spawned or not after_spawn):
            detail = f"pid {fields['pid']}" if fields["state"] == "running" else fields["reason"]
            final[event.engine] = fields["state"]
            lines[event.engine] = f"{fields['state']} ({detail})"
            pending.discard(event.engine)
            if not pending:
                break
    for name in pending:
        lines[name] = f"{lines[name]} (not done within the timeout)"
    return final, lines


start = _command("start", "Start an engine that is not running (a fresh restart budget).", "audit")
stop = _command("stop", "Stop an engine (stop signal, then SIGKILL after its stop_timeout); it is not restarted.", "audit.2")
restart = _command("restart", "Restart an engine now: stop it, then start it again (a fresh restart budget).", "audit")
