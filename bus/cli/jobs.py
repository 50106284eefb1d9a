"""`bus submit`, `bus jobs`, `bus retry`: work queues from the command line (docs/PROTOCOL.md section 10)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import zmq
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bus import exitcodes
from bus.control_client import ControlClient
from bus.errors import BusError, UsageError
from bus.runtime import resolve
from bus.work_client import read_payloads, submit_all

from .common import Seconds, command_body, key_options
from .complete import complete_address, complete_queue, complete_submit
from .render import printable

STATE_STYLE = {"queued": "", "running": "cyan", "done": "green", "dead": "bold red"}


@click.command()
@click.argument("words", nargs=-1, required=True, metavar="[ADDRESS] QUEUE PAYLOAD", shell_complete=complete_submit)
@click.option("--wait", is_flag=True, help="When the queue is full, wait for room (default: refuse, exit 1).")
@click.option("--timeout", type=Seconds(), default=10.0, show_default=True, metavar="SECONDS", help="How long to wait for each answer (and, with --wait, for room).")
@click.option("--json", "as_json", is_flag=True, help="Print the ids as one JSON list.")
@key_options
@command_body
def submit(words: tuple[str, ...], wait: bool, timeout: float, as_json: bool) -> int:
    """Put jobs into a queue of a running supervisor; prints their ids.

    PAYLOAD is a JSON object, or @FILE (one JSON object, a JSON list of
    objects, or JSON lines: one job per line), or - for JSON lines on stdin.
    ADDRESS is as for `bus status`.

    \b
    Examples:
      bus submit library '{"path": "a.flac"}'
      find music -name '*.flac' | jq -Rc '{path: .}' | bus submit library -
      bus submit tcp://10.0.0.5:7010 library @jobs.jsonl --wait
    """
    if len(words) not in (2, 3):
        raise UsageError(f"give QUEUE and PAYLOAD (and an ADDRESS first, if not the local session); got {len(words)} argument(s)")
    address, queue, payload = (None, *words) if len(words) == 2 else words
    payloads = _payloads(payload)
    if not payloads:
        raise UsageError(f"{payload!r} holds no job")
    with zmq.Context() as ctx:
        client = ControlClient(ctx, resolve(address), timeout=timeout)
        try:
            ids = submit_all(lambda op, **args: client.request(op, **args)[0], queue, payloads, wait=wait, timeout=timeout if wait else None)
        finally:
            client.close()
    click.echo(json.dumps(ids) if as_json else "\n".join(ids))
    return exitcodes.OK


def _payloads(payload: str) -> list[dict[str, Any]]:
    if payload == "-":
        text, where = sys.stdin.read(), "stdin"
    elif payload.startswith("@"):
        path = Path(payload[1:])
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text") from None
    else:
        try:
            value = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise UsageError(f"PAYLOAD is not JSON ({exc.msg} at column {exc.colno}): give an object like '{{\"path\": \"a.flac\"}}', or @FILE, or -") from None
        if not isinstance(value, dict):
            raise UsageError(f"PAYLOAD must be a JSON object, got {type(value).__name__}: wrap it, as '{{\"value\": {payload}}}'")
        return [value]
    try:
        return read_payloads(text)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


@click.command()
@click.argument("queue", required=False, shell_complete=complete_queue)
@click.argument("address", required=False, shell_complete=complete_address)
@click.option("--state", type=click.Choice(["queued", "running", "done", "dead"]), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@click.option("--timeout", type=Seconds(), default=5.0, show_default=True, metavar="SECONDS", help="How long to wait for an answer.")
@key_options
@command_body
def jobs(queue: str | None, address: str | None, state: str | None, limit: int, as_json: bool, timeout: float) -> int:
    """List the jobs of a running supervisor's queues (all, or QUEUE's).

    ADDRESS is as for `bus status`; the per-queue counts come first.

    \b
    Examples:
      bus jobs
      bus jobs library --state dead
      bus jobs library tcp://10.0.0.5:7010 --json
    """
    with zmq.Context() as ctx:
        client = ControlClient(ctx, resolve(address), timeout=timeout)
        try:
            reply, _ = client.request("jobs", queue=queue, state=state, limit=limit)
        finally:
            client.close()
    if as_json:
        for job in reply["jobs"]:
            click.echo(json.dumps(job, default=repr))
        return exitcodes.OK
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    print_queues(console, reply["queues"])
    table = Table(title=f"{reply['total']:,} job(s)" + (f", the first {len(reply['jobs']):,}" if reply["total"] > len(reply["jobs"]) else ""), title_justify="left")
    for column in ("job", "queue", "state", "attempt", "instance", "age", "payload", "result / error"):
        table.add_column(column, overflow="fold", no_wrap=column == "job")
    now = time.time()
    for job in reply["jobs"]:
        said = job["error"] if job["state"] in ("dead", "queued") and job["error"] else (json.dumps(job["result"], default=repr) if job["result"] else "")
        table.add_row(job["id"], job["queue"], Text(job["state"], STATE_STYLE.get(job["state"], "")), str(job["attempt"]), job["instance"] or "",
                      _age(now - job["submitted"]), Text(printable(_short(json.dumps(job["payload"], default=repr)))), Text(printable(_short(said))))
    console.print(table)
    return exitcodes.OK


def print_queues(console: Console, queues: dict[str, dict[str, Any]]) -> None:
    """Per queue: depth, in flight, done, failed, dead, rate (bus status, bus jobs)."""
    if not queues:
        return
    table = Table(title="queues", title_justify="left")
    for column in ("queue", "queued", "running", "done", "failed", "dead", "jobs/s"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for name, q in queues.items():
        table.add_row(name, f"{q['queued']:,}", f"{q['running']:,}", f"{q['done']:,}", f"{q['failed']:,}",
                      Text(f"{q['dead']:,}", "bold red" if q["dead"] else ""), f"{q['rate']:g}")
    console.print(table)


@click.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB...")
@click.option("--address", "-a", metavar="ADDRESS", shell_complete=complete_address, help="The supervisor, as for `bus status` (default: the local session).")
@click.option("--timeout", type=Seconds(), default=5.0, show_default=True, metavar="SECONDS", help="How long to wait for an answer.")
@key_options
@command_body
def retry(job_ids: tuple[str, ...], address: str | None, timeout: float) -> int:
    """Queue dead jobs again (their attempts start over).

    \b
    Examples:
      bus jobs --state dead
      bus retry 3f2a91c0-17
    """
    failed = 0
    with zmq.Context() as ctx:
        client = ControlClient(ctx, resolve(address), timeout=timeout)
        try:
            for job_id in job_ids:
                try:
                    reply, _ = client.request("retry", job=job_id)
                except BusError as exc:
                    if getattr(exc, "code", "") != "unknown-job":
                        raise
                    click.echo(f"bus retry: {exc}", err=True)
                    failed += 1
                    continue
                click.echo(f"{job_id}: queued again in {reply['job']['queue']}")
        finally:
            client.close()
    return exitcodes.ENGINE_FAILED if failed else exitcodes.OK


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.0f}h"
