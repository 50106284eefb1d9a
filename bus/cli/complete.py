"""Shell completion: the values only a running system knows (README, "Shell completion").

Click completes command and option names by itself (`_BUS_COMPLETE=bash_source bus`);
the callbacks here, given as `shell_complete=` where an argument or option is declared,
add session names (the run directories under `runtime_base()`, and sessions with a
journal), engine and queue names (asked of the supervisor in a `status` request) and
event kinds. A completion runs at every Tab, at a prompt: each is quick (a supervisor
gets ASK_TIMEOUT to answer, and a session where none has bound is not asked at all) and
silent (anything that goes wrong, from no supervisor to a refused key, offers nothing).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable

import click
import zmq
from click.shell_completion import CompletionItem

from bus.control_client import ControlClient
from bus.errors import BusError
from bus.keys import client_keys
from bus.protocol import KINDS
from bus.runtime import HAS_IPC, INFO_FILE, SESSION_NAME, resolve, runtime_base, state_base

ASK_TIMEOUT = 0.5  # seconds a completion waits for a supervisor's answer

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def _quiet(f: Completer) -> Completer:
    @functools.wraps(f)
    def wrapper(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        try:
            return f(ctx, param, incomplete)
        except Exception:  # a prompt gets no traceback: no supervisor, a bad address, a refused key all offer nothing
            return []

    return wrapper


def _items(names: Iterable[str], incomplete: str, what: str) -> list[CompletionItem]:
    return [CompletionItem(name, help=what) for name in dict.fromkeys(names) if name.startswith(incomplete)]


def session_names() -> list[str]:
    """Local sessions: run directories a supervisor has used (a lock or supervisor.json in
    them), and sessions with a journal (`bus runs` and `bus tail --run` read those)."""
    found: list[str] = []
    for base, marks in ((runtime_base(), ("lock", INFO_FILE)), (state_base(), ("journal.sqlite",))):
        try:
            entries = sorted(base.iterdir())
        except OSError:
            continue
        found += [entry.name for entry in entries if SESSION_NAME.fullmatch(entry.name) and any((entry / mark).exists() for mark in marks)]
    return list(dict.fromkeys(found))


def ask_status(ctx: click.Context, address: str | None) -> dict[str, Any] | None:
    """A supervisor's `status` reply, or None when no supervisor can be there. Errors in
    asking raise (the callbacks' `_quiet` swallows them)."""
    try:
        target = resolve(address)
    except BusError:  # not an address: nobody to ask
        return None
    if not target.located or (HAS_IPC and target.session is not None and not (target.session.dir / "ctl").exists()):
        return None  # no supervisor has bound there (ipc), or none has written supervisor.json (local TCP): do not wait for one
    keys = ctx.params.get("server_key"), ctx.params.get("key")  # (key_options, not yet in the environment)
    if any(keys) and target.session is None:  # (tcp://HOST:PORT: as resolve() takes them from the environment)
        target = dataclasses.replace(target, keys=client_keys(*keys))
    with zmq.Context() as zctx:
        client = ControlClient(zctx, target, timeout=ASK_TIMEOUT)
        try:
            reply, _ = client.request("status")
        finally:
            client.close()
    return reply


def given_address(ctx: click.Context) -> str | None:
    """The ADDRESS typed so far. While an option's value is completed (`bus tail web -e <Tab>`)
    click leaves the positionals unparsed, in `ctx.args`: they are matched to the arguments here."""
    address = ctx.params.get("address")
    if address is None and ctx.args:
        arguments = [param.name for param in ctx.command.params if isinstance(param, click.Argument)]
        address = dict(zip(arguments, ctx.args)).get("address")
    return address


@_quiet
def complete_session(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """`--session NAME`."""
    return _items(session_names(), incomplete, "session")


@_quiet
def complete_address(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """ADDRESS: a session name, or a run directory once it looks like a path (tcp://HOST:PORT is typed)."""
    if "/" in incomplete or incomplete.startswith((".", "~")):
        return [CompletionItem(incomplete, type="dir")]
    return _items(session_names(), incomplete, "session")


@_quiet
def complete_engine(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """NAME of an engine, or of one instance, at the ADDRESS given so far (else the default session)."""
    reply = ask_status(ctx, given_address(ctx))
    entries = (reply.get("engines") or []) if reply else []
    engines = _items((e["engine"] for e in entries), incomplete, "engine")
    instances = _items((e["name"] for e in entries if e["name"] != e["engine"]), incomplete, "instance")
    return engines + instances


@_quiet
def complete_queue(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """QUEUE of the supervisor at the ADDRESS given so far (else the default session)."""
    return _queues(ctx, given_address(ctx), incomplete)


def _queues(ctx: click.Context, address: str | None, incomplete: str) -> list[CompletionItem]:
    try:
        reply = ask_status(ctx, address)
    except Exception:  # (as in _quiet, but `bus submit` still offers sessions besides)
        return []
    return _items((reply.get("queues") or {}) if reply else (), incomplete, "queue")


@_quiet
def complete_submit(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """`bus submit [ADDRESS] QUEUE PAYLOAD`: first a queue or an address; after an address, its queues."""
    words = ctx.params.get(param.name or "") or ()
    if not words:
        return _queues(ctx, None, incomplete) + complete_address(ctx, param, incomplete)
    first = words[0]
    if len(words) == 1 and ("://" in first or "/" in first or first in session_names()):
        return _queues(ctx, first, incomplete)
    return []  # (a PAYLOAD: nothing to offer)


@_quiet
def complete_upstream(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """`bus hub [NAME=]ADDRESS...`: an address, after a `NAME=` if one is typed."""
    label, equals, rest = incomplete.rpartition("=")
    prefix = label + equals
    return [CompletionItem(prefix + item.value, type=item.type, help=item.help)
            for item in complete_address(ctx, param, rest) if item.type == "plain" or not prefix]


@_quiet
def complete_kind(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """`bus tail -k KIND`."""
    return _items(sorted(KINDS), incomplete, "event kind")
