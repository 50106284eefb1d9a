"""What every command shares: options defined once, errors as one line, exit codes."""

from __future__ import annotations

import functools
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import click
import zmq

from bus import exitcodes
from bus.errors import BusError, NotRunning
from bus.keys import keys_dir as load_keys_dir
from bus.protocol import AnyEvent
from bus.runtime import MAX_WAIT
from bus.subscriber import Subscriber

from .complete import complete_session
from .render import JsonRenderer, LineRenderer, LiveRenderer, ShotSaver




class Seconds(click.FloatRange):
    """A finite number of seconds in a range (click's FloatRange lets NaN through)."""

    name = "seconds"

    def __init__(self, low: float = 0.0, high: float = MAX_WAIT, *, above: bool = True) -> None:
        super().__init__(low, high, min_open=above)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if seconds != seconds:  # NaN compares false with both bounds
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


def stop_timeout_option(default: float | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    shown = {"default": default, "show_default": True} if default is not None else {}
    return click.option("--stop-timeout", type=Seconds(0, 86400, above=False), metavar="SECONDS", help="Grace between the stop signal and SIGKILL when stopping (0 to 86400" + ("" if default is not None else "; default 10") + ").", **shown)


def session_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--session", "-S", metavar="NAME", envvar="BUS_SESSION", shell_complete=complete_session,
        help="Local session to run in (default: $BUS_SESSION or 'default'); one supervisor per session.",
    )(f)


def journal_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--no-journal", is_flag=True, help="Keep history in memory only (no journal on disk).")(f)


def key_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--server-key / --key for supervisors that speak CURVE over tcp (docs/SECURITY.md).
    They override BUS_SERVER_KEY / BUS_KEY, which every client reads."""

    @functools.wraps(f)
    def wrapper(*args: Any, server_key: str | None, key: str | None, **kwargs: Any) -> Any:
        if server_key:
            os.environ["BUS_SERVER_KEY"] = server_key
        if key:
            os.environ["BUS_KEY"] = key
        return f(*args, **kwargs)

    wrapper = click.option("--key", metavar="FILE", help="Your key pair (NAME.key_secret) for a supervisor with keys; or set BUS_KEY.")(wrapper)
    return click.option("--server-key", metavar="FILE", help="The supervisor's public key (its .key file) when it uses keys; or set BUS_SERVER_KEY.")(wrapper)


def server_security_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--insecure", is_flag=True, help="Allow --listen beyond loopback without keys (warned on every start).")(f)
    return click.option("--keys", "keys_dir", metavar="DIR", type=click.Path(file_okay=False), help="CURVE keys for --listen: DIR/server.key_secret and DIR/{engines,subscribers,admins}/*.key (docs/SECURITY.md).")(f)


def security_settings(settings: dict[str, Any], listen: str | None, keys_dir: str | None, insecure: bool) -> dict[str, Any]:
    """Fold the command line's --listen, --keys and --insecure into config-file settings."""
    if listen:
        settings["listen"] = listen
    if keys_dir:
        settings["security"] = load_keys_dir(keys_dir)
    if insecure:
        settings["insecure"] = True
    return settings


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--shots", metavar="DIR", type=click.Path(file_okay=False), help="Save every screenshot in DIR, byte for byte.")(f)
    f = click.option("--plain", is_flag=True, help="Plain lines, no live bars (the default when stdout is not a terminal).")(f)
    f = click.option("--json", "as_json", is_flag=True, help="One JSON object per event on stdout (screenshots as size and sha256).")(f)
    return f


def quiet_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="Show nothing (watch with `bus tail`); errors still go to stderr.")(f)


def make_renderer(as_json: bool, plain: bool, shots: str | None, quiet: bool = False) -> Any:
    """How `bus up`/`bus run` show events; None with --quiet (then --shots still saves)."""
    saver = ShotSaver(shots) if shots else None
    if quiet:
        return saver
    if as_json:
        return _SavingJson(saver)
    if plain or not sys.stdout.isatty():
        return LineRenderer(sys.stdout, color=sys.stdout.isatty(), saver=saver)
    return LiveRenderer(saver=saver)


class _SavingJson(JsonRenderer):
    def __init__(self, saver: ShotSaver | None) -> None:
        super().__init__(sys.stdout)
        self.saver = saver

    def handle(self, event: Any) -> None:
        super().handle(event)
        if self.saver:
            self.saver.handle(event)


def command_body(f: Callable[..., int]) -> Callable[..., None]:
    """Run a command's plain function; turn its result into the exit code, and a
    BusError into one line on stderr (never a traceback)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        name = click.get_current_context().info_name
        try:
            code = f(*args, **kwargs)
        except BusError as exc:
            click.echo(f"bus {name}: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            sys.exit(exitcodes.INTERRUPTED)
        sys.exit(code)

    return wrapper


@contextmanager
def watching(address: str | None, kinds: list[str]) -> Iterator[Subscriber]:
    """A subscription to `kinds`, proven live (welcomed) before it is handed
    out: a request sent after this cannot cause an event we miss."""
    with zmq.Context() as ctx:
        sub = Subscriber(address, kinds=kinds, history=None, ctx=ctx, timeout=5.0)
        try:
            try:
                sub.wait_ready(timeout=5.0)
            except TimeoutError as exc:
                raise NotRunning(str(exc)) from None
            yield sub
        finally:
            sub.close()


def events_until(sub: Subscriber, deadline: float) -> Iterator[AnyEvent]:
    """Events until `deadline` (time.monotonic) or the end of the run."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = sub.recv(timeout=left)
        except TimeoutError:
            return
        if event is None:
            return
        yield event
