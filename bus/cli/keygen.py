"""`bus keygen NAME`"""

from __future__ import annotations

import os
from pathlib import Path

import click

from bus.keys import keygen as make_keys

from .common import command_body


def default_keys_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "bus" / "keys"


@click.command()
@click.argument("name")
@click.option("--dir", "-d", "directory", metavar="DIR", type=click.Path(file_okay=False), help="Where to write the pair (default: ~/.config/bus/keys).")
@command_body
def keygen(name: str, directory: str | None) -> int:
    """Make a CurveZMQ key pair: NAME.key (public: hand it out) and
    NAME.key_secret (keep it; owner-only).

    A supervisor gets one (`server`), and so does each engine host, subscriber
    and admin that connects over TCP; the supervisor's config says which public
    keys may do what (docs/SECURITY.md).

    \b
    Examples:
      bus keygen server --dir keys
      bus keygen viewer        then copy viewer.key to the supervisor's keys/subscribers/
    """
    public, secret = make_keys(directory or default_keys_dir(), name)
    click.echo(f"{public}\n{secret}")
    click.echo(
        f"bus keygen: hand out {public.name}; keep {secret.name} private "
        "(a supervisor lists public keys by role; a client gives its .key_secret with --key or BUS_KEY)",
        err=True,
    )
    return 0
