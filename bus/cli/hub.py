"""`bus hub [NAME=]ADDRESS... [--listen tcp://HOST:PORT]`"""

from __future__ import annotations

import dataclasses

import click

from bus.errors import UsageError
from bus.keys import client_keys
from bus.supervisor import SupervisorConfig
from bus.supervisor.hub import Hub, parse_upstream

from .common import command_body, journal_option, make_renderer, output_options, quiet_option, security_settings, server_security_options
from .complete import complete_session, complete_upstream
from .launch import launch


@click.command()
@click.argument("upstreams", nargs=-1, required=True, metavar="[NAME=]ADDRESS...", shell_complete=complete_upstream)
@click.option("--session", metavar="NAME", default="hub", show_default=True, shell_complete=complete_session, help="The hub's own session: `bus tail NAME`, `bus status NAME` find it here.")
@click.option("--listen", metavar="tcp://HOST:PORT", help="Also listen on TCP: control on PORT, pub on PORT+1 (and PORT+2, unused by a hub).")
@server_security_options
@click.option("--key", metavar="FILE", help="The hub's own key pair (NAME.key_secret), a subscriber key at each upstream; or set BUS_KEY.")
@click.option("--server-key", "server_keys", metavar="[NAME=]FILE", multiple=True, help="An upstream's public key (its .key file): NAME=FILE for one upstream, FILE for all; or set BUS_SERVER_KEY.")
@journal_option
@output_options
@quiet_option
@command_body
def hub(upstreams: tuple[str, ...], session: str, listen: str | None, keys_dir: str | None, insecure: bool, key: str | None, server_keys: tuple[str, ...],
        no_journal: bool, as_json: bool, plain: bool, shots: str | None, quiet: bool) -> int:
    """Follow several supervisors and republish all their events on one endpoint.

    Each event keeps its own fields and gains `origin` (the upstream's label:
    NAME, or made from its address) and `origin_gseq`; the hub numbers what it
    publishes itself, keeps history and a journal, and answers snapshot and
    history requests, so `bus tail`, `bus status`, `bus web` and any
    subscriber use it like a supervisor. An upstream that stops answering is
    shown (`upstream lost`) and followed again when it answers, with what it
    published meanwhile fetched from its history. Runs until Ctrl-C or `bus down`.

    \b
    Examples:
      bus hub east=tcp://10.0.0.5:7010 west=tcp://10.0.0.6:7010 --key hub.key_secret --server-key east=east.key --server-key west=west.key
      bus hub east=tcp://10.0.0.5:7010 --listen tcp://0.0.0.0:7100 --keys hubkeys/
      bus tail hub          (on this machine; from elsewhere: bus tail tcp://THIS-HOST:7100)
    """
    shared = [s for s in server_keys if "=" not in s]
    named = dict(s.split("=", 1) for s in server_keys if "=" in s)
    if len(shared) > 1:
        raise UsageError("--server-key FILE (for every upstream) given twice: name them, --server-key NAME=FILE")
    specs = []
    for text in upstreams:
        spec = parse_upstream(text)
        if spec.address.session is None:  # tcp://HOST:PORT (a local session's TCP is keyless): its own server key, else the shared one (client_keys falls back to BUS_SERVER_KEY, BUS_KEY)
            keys = client_keys(named.pop(spec.origin, None) or (shared[0] if shared else None), key)
            spec = dataclasses.replace(spec, address=dataclasses.replace(spec.address, keys=keys))
        specs.append(spec)
    if named:
        raise UsageError(f"--server-key {next(iter(named))}=...: no upstream is labelled {next(iter(named))!r}")
    settings = security_settings({}, listen, keys_dir, insecure)
    cfg = SupervisorConfig(engines=(), session=session, journal=not no_journal, watchdog=False, **settings)
    return launch(cfg, make_renderer(as_json, plain, shots, quiet), announce=not (as_json or quiet), make=lambda ctx: Hub(cfg, specs, ctx=ctx))

