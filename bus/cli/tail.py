"""`bus tail [ADDRESS]` and `bus runs [ADDRESS]`"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import click

from bus import exitcodes
from bus.errors import BusError, NotRunning, UsageError
from bus.protocol import KINDS
from bus.replay import Replay, list_runs
from bus.follow import GONE_AFTER
from bus.subscriber import ALL, Subscriber

from .common import Seconds, command_body, key_options, make_renderer, output_options
from .complete import complete_address, complete_engine, complete_kind
from .render import LiveRenderer, LineRenderer

WAIT_NOTICE = 1.0  # seconds without a supervisor before saying we are waiting
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_LAST = 1_000_000_000  # -n: more than any history holds
MAX_SINCE = 100 * 365 * 86400.0


@click.command()
@click.argument("address", required=False, shell_complete=complete_address)
@click.option("-e", "--engine", "engines", multiple=True, metavar="NAME", shell_complete=complete_engine, help="Only this engine (and its instances NAME.1, ...); repeatable.")
@click.option("-k", "--kind", "kinds", multiple=True, metavar="KIND", shell_complete=complete_kind, help="Only this event kind, e.g. progress, log, screenshot; repeatable.")
@click.option("-n", "--last", "last", default="all", show_default=True, metavar="N|all", help="Replay the newest N matching events first; 0 for live only.")
@click.option("--since", metavar="DURATION", help="Replay what happened in the last DURATION (30s, 10m, 2h, 1d) instead.")
@click.option("--no-follow", is_flag=True, help="Print what the run holds so far and exit.")
@click.option("--run", "run", metavar="ID|last", help="Replay a run that is over (see `bus runs`) and exit; works with no supervisor (journal).")
@click.option("--timeout", type=Seconds(), metavar="SECONDS", help="Give up when no supervisor answers within SECONDS (default: wait).")
@click.option("--gone-after", type=Seconds(), default=GONE_AFTER, show_default=True, metavar="SECONDS", help="Once following, say the supervisor is gone (exit 4) after SECONDS without an answer.")
@output_options
@key_options
@command_body
def tail(address: str | None, engines: tuple[str, ...], kinds: tuple[str, ...], last: str, since: str | None, no_follow: bool, run: str | None, timeout: float | None, gone_after: float, as_json: bool, plain: bool, shots: str | None) -> int:
    """Follow a supervisor's events until its run ends.

    ADDRESS is a session name (default: the local default session), a run
    directory, or tcp://HOST:PORT of a supervisor's control socket. Started
    before the supervisor, it waits for it; started late, it first replays
    what the run holds (all of it by default), so no event is missed. On a
    terminal, a progress bar per engine (seeded from the supervisor's snapshot)
    and log lines; piped, plain lines. Exits 0 at the end of the run, 1 if some
    events could no longer be fetched (or a run was cut short: its supervisor
    went away and a new one came, which it then follows, saying so), 4 when the
    supervisor is gone (--gone-after).

    \b
    Examples:
      bus tail
      bus tail --json > events.jsonl
      bus tail tcp://10.0.0.5:7010 -k progress -k log
      bus tail -e audit --shots shots/
      bus tail -n 20                    the newest 20, then live
      bus tail --since 10m --no-follow  the last ten minutes, then exit
      bus tail --run last --json        the whole previous run, from the journal
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise UsageError(f"unknown kind {unknown[0]!r} for -k; known kinds: {', '.join(sorted(KINDS))}")
    history = _history(last)
    since_ts = time.time() - _duration(since) if since else None
    renderer = make_renderer(as_json, plain, shots)
    try:
        cut: list[tuple[str, int]] = []
        broken = None
        if run is not None or no_follow:
            lost, broken = _replay(address, run, history, since_ts, engines, kinds, renderer)
        else:
            lost, cut = _follow(address, history, since_ts, engines, kinds, timeout, gone_after, renderer)
    finally:
        renderer.close()
    return _verdict(lost, cut, broken)


def _verdict(lost: list[tuple[int, int | None]], cut: list[tuple[str, int]], broken: str | None) -> int:
    """Say what could not be had, one line each; exit 1 if anything."""
    for run, at in cut:
        click.echo(f"bus tail: run {run} ended without its end for us after event {at}: what its supervisor published after that could not be had", err=True)
    if broken:
        click.echo(f"bus tail: the journal stopped after event {lost[-1][0] - 1} of this run ({broken}): the rest of the run was never written to disk", err=True)
    elif lost:
        ranges = ", ".join(f"{a}-{b if b is not None else 'its end'}" for a, b in lost)
        click.echo(f"bus tail: events {ranges} were no longer in the supervisor's history", err=True)
    return exitcodes.ENGINE_FAILED if lost or cut or broken else exitcodes.OK


def _follow(address: str | None, history: int | str | None, since: float | None, engines: tuple[str, ...], kinds: tuple[str, ...], timeout: float | None, gone_after: float,
            renderer: Any) -> tuple[list[tuple[int, int | None]], list[tuple[str, int]]]:
    sub = Subscriber(address, engines=engines or None, kinds=kinds or None, history=None if since else history, since=since, gone_after=gone_after)
    try:
        _wait_for_supervisor(sub, timeout)
        if isinstance(renderer, (LiveRenderer, LineRenderer)):
            _seed(sub, renderer, summarize=history != ALL or since is not None, engines=engines)
        told = 0
        for event in sub:
            if len(sub.cut) > told:  # never walk into another run silently
                for run, at in sub.cut[told:]:
                    click.echo(f"bus tail: run {run} ended without its end for us (its supervisor went away after event {at}); following the run now at {sub.address.label} ({sub.run})", err=True)
                told = len(sub.cut)
            renderer.handle(event)
            if not sub.holds():
                renderer.flush()  # nothing more at hand: show what is buffered now
        return sub.lost, sub.cut
    finally:
        sub.close()


def _wait_for_supervisor(sub: Subscriber, timeout: float | None) -> None:
    first = WAIT_NOTICE if timeout is None or timeout > WAIT_NOTICE else timeout
    try:
        sub.wait_ready(timeout=first)
        return
    except TimeoutError:
        if timeout is not None and timeout <= WAIT_NOTICE:
            raise NotRunning(f"no supervisor answered at {sub.address.label} within {timeout:g}s") from None
    click.echo(f"bus tail: waiting for a supervisor at {sub.address.label} (Ctrl-C to stop)", err=True)
    try:
        sub.wait_ready(timeout=None if timeout is None else timeout - WAIT_NOTICE)
    except TimeoutError:
        raise NotRunning(f"no supervisor answered at {sub.address.label} within {timeout:g}s") from None


def _seed(sub: Subscriber, renderer: Any, *, summarize: bool, engines: tuple[str, ...]) -> None:
    """Start from the supervisor's snapshot: bars in the live view; a line per
    engine in plain mode when not everything is replayed."""
    try:
        snapshot = sub.snapshot()
    except BusError:
        return  # an older supervisor without snapshots: the stream alone will do
    for engine in snapshot["engines"]:
        if engines and engine["name"] not in engines and engine["engine"] not in engines:
            continue
        if isinstance(renderer, LiveRenderer):
            renderer.seed(engine)
        elif summarize:
            renderer.summary(engine)


def _replay(address: str | None, run: str | None, history: int | str | None, since: float | None, engines: tuple[str, ...], kinds: tuple[str, ...], renderer: Any) -> tuple[list[tuple[int, int | None]], str | None]:
    replay = Replay(address, run=run, last=history if isinstance(history, int) else None, since=since, kinds=kinds or None, engines=engines or None)
    if history is None and since is None:
        return [], None  # -n 0 --no-follow: nothing asked for
    for event in replay:
        renderer.handle(event)
    renderer.flush()
    return replay.lost, replay.broken


def _history(last: str) -> int | str | None:
    if last == ALL:
        return ALL
    try:
        count = int(last)
    except ValueError:
        raise UsageError(f"-n/--last takes a number or 'all', got {last!r}") from None
    if not 0 <= count <= MAX_LAST:
        raise UsageError(f"-n/--last must be from 0 to {MAX_LAST:,}, or 'all'; got {count}")
    return count or None


def _duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise UsageError(f"--since {text!r} is not a duration like 30s, 10m, 2h or 1d")
    seconds = float(match.group(1)) * UNITS[match.group(2) or "s"]
    if seconds > MAX_SINCE:
        raise UsageError(f"--since {text!r} reaches back more than 100 years")
    return seconds


@click.command()
@click.argument("address", required=False, shell_complete=complete_address)
@key_options
@command_body
def runs(address: str | None) -> int:
    """List the runs a session's journal holds (newest last), for `bus tail --run`.

    Works with no supervisor running: the journal is read directly.

    \b
    Examples:
      bus runs
      bus tail --run last --json > previous.jsonl
    """
    current, known = list_runs(address)
    if not known:
        click.echo("no runs recorded")
        return exitcodes.OK
    for info in known:
        started = datetime.fromtimestamp(info["started"]).strftime("%Y-%m-%d %H:%M:%S")
        if info["run"] == current:
            how = "running now"
        elif info["stopped"] is None:
            how = "ended without stopping (supervisor killed?)"
        else:
            how = f"exit code {info['code']}, {info['stopped'] - info['started']:.1f}s"
        if info.get("broken"):
            how += f"; the journal stopped after event {info['broken_after']}: {info['broken']}"
        click.echo(f"{info['run']}  {started}  {info['events']:>7} events  {how}")
    return exitcodes.OK
