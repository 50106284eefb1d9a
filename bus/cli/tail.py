"""`bus tail [ADDRESS]`"""

from __future__ import annotations

import click

from bus import exitcodes
from bus.errors import NotRunning, UsageError
from bus.protocol import KINDS
from bus.subscriber import ALL, Subscriber

from .common import command_body, make_renderer, output_options

WAIT_NOTICE = 1.0  # seconds without a supervisor before saying we are waiting


@click.command()
@click.argument("address", required=False)
@click.option("-e", "--engine", "engines", multiple=True, metavar="NAME", help="Only this engine (and its instances NAME.1, ...); repeatable.")
@click.option("-k", "--kind", "kinds", multiple=True, metavar="KIND", help="Only this event kind, e.g. progress, log, screenshot; repeatable.")
@click.option("-n", "--last", "last", default="all", show_default=True, metavar="N|all", help="Replay the last N matching events first; 0 for live only.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Give up when no supervisor answers within SECONDS (default: wait).")
@output_options
@command_body
def tail(address: str | None, engines: tuple[str, ...], kinds: tuple[str, ...], last: str, timeout: float | None, as_json: bool, plain: bool, shots: str | None) -> int:
    """Follow a supervisor's events until its run ends.

    ADDRESS is a session name (default: the local default session), a run
    directory, or tcp://HOST:PORT of a supervisor's control socket. Started
    before the supervisor, it waits for it; started late, it first replays
    what the supervisor holds, so no event is missed. Exits 0 at the end of
    the run, 1 if some events could no longer be fetched.

    \b
    Examples:
      bus tail
      bus tail --json > events.jsonl
      bus tail tcp://10.0.0.5:7010 -k progress -k log
      bus tail -e audit --shots shots/
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise UsageError(f"unknown kind {unknown[0]!r} for -k; known kinds: {', '.join(sorted(KINDS))}")
    history = _history(last)
    renderer = make_renderer(as_json, plain, shots)
    sub = Subscriber(address, engines=engines or None, kinds=kinds or None, history=history)
    try:
        try:
            sub.wait_ready(timeout=WAIT_NOTICE if timeout is None or timeout > WAIT_NOTICE else timeout)
        except TimeoutError:
            if timeout is not None and timeout <= WAIT_NOTICE:
                raise NotRunning(f"no supervisor answered at {sub.address.label} within {timeout:g}s") from None
            click.echo(f"bus tail: waiting for a supervisor at {sub.address.label} (Ctrl-C to stop)", err=True)
            try:
                sub.wait_ready(timeout=None if timeout is None else timeout - WAIT_NOTICE)
            except TimeoutError:
                raise NotRunning(f"no supervisor answered at {sub.address.label} within {timeout:g}s") from None
        for event in sub:
            renderer.handle(event)
    finally:
        renderer.close()
        sub.close()
    if sub.lost:
        ranges = ", ".join(f"{a}-{b}" for a, b in sub.lost)
        click.echo(f"bus tail: events {ranges} were no longer in the supervisor's history", err=True)
        return exitcodes.ENGINE_FAILED
    return exitcodes.OK


def _history(last: str) -> int | str | None:
    if last == ALL:
        return ALL
    try:
        count = int(last)
    except ValueError:
        raise UsageError(f"-n/--last takes a number or 'all', got {last!r}") from None
    if count < 0:
        raise UsageError(f"-n/--last must be >= 0, got {count}")
    return count or None
