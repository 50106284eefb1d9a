"""`bus up CONFIG.toml`"""

from __future__ import annotations

import json
import sys

import click

from bus.errors import UsageError
from bus.supervisor import SupervisorConfig, load_config
from bus.supervisor.config import supervisor_settings

from .common import command_body, journal_option, make_renderer, output_options, quiet_option, security_settings, server_security_options, session_option, stop_timeout_option
from .launch import launch


@click.command()
@click.argument("config", metavar="[CONFIG.toml]", required=False)
@session_option
@click.option("--listen", metavar="tcp://HOST:PORT", help="Also listen on TCP: control on PORT, pub on PORT+1, pull on PORT+2.")
@server_security_options
@stop_timeout_option(None)
@click.option("--keep", is_flag=True, help="Keep running when every engine has exited (for `bus start`, `bus spawn` and remote engines: then CONFIG.toml may list none, or be left out); stop with Ctrl-C or `bus down`.")
@journal_option
@output_options
@quiet_option
@click.option("--settings", metavar="JSON", hidden=True, help="A [supervisor] table as JSON, over the file's (bus.app passes its settings so).")
@click.option("--host-pipe", is_flag=True, hidden=True, help="stdin is a pipe from the program that started us: stop everything when it ends (bus.app).")
@command_body
def up(config: str | None, session: str | None, listen: str | None, keys_dir: str | None, insecure: bool, stop_timeout: float | None, keep: bool, no_journal: bool, as_json: bool, plain: bool, shots: str | None, quiet: bool, settings: str | None, host_pipe: bool) -> int:
    """Start the engines CONFIG.toml lists and show them live; exit when all are done.

    Engines are restarted as their `restart` policy says; one that ends with
    `on_exit = "stop-all"` stops the others. Exit code: 0 when every engine
    exited 0 (or was stopped), 1 when one did not, 3 when the bus could not
    start, 130 on Ctrl-C (engines are stopped, nothing is left running).

    \b
    Examples:
      bus up examples/demo.toml
      bus up --json examples/demo.toml > events.jsonl
      bus up --listen tcp://127.0.0.1:7010 examples/demo.toml
      bus up --listen tcp://0.0.0.0:7010 --keys keys/ examples/demo.toml
      bus up --keep services.toml      (then: bus status, bus restart NAME, bus down)
      bus up --keep                    (no engines yet: bus spawn -- CMD adds them)
    """
    if config is None and not keep:
        raise UsageError("missing CONFIG.toml: name the engines' config file (or give --keep to start with none and add them with bus spawn)")
    engines, table = load_config(config, remote_only=keep) if config is not None else ((), {})
    if settings is not None:
        try:
            table.update(supervisor_settings("--settings", json.loads(settings)))
        except ValueError as exc:
            raise UsageError(f"--settings: not JSON: {exc}") from None
    security_settings(table, listen, keys_dir, insecure)
    if stop_timeout is not None:
        table["stop_timeout"] = stop_timeout
    if no_journal:
        table["journal"] = False
    cfg = SupervisorConfig(engines=engines, session=session, exit_when_done=not keep, **table)
    return launch(cfg, make_renderer(as_json, plain, shots, quiet), announce=not (as_json or quiet), host=sys.stdin.buffer if host_pipe else None)
