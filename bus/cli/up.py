"""`bus up CONFIG.toml`, `bus up Procfile`"""

from __future__ import annotations

import json
import sys

import click

from bus.errors import UsageError
from bus.supervisor import SupervisorConfig
from bus.supervisor.config import supervisor_settings
from bus.supervisor.procfile import BASE_PORT, load_engines, parse_concurrency

from .common import command_body, journal_option, make_renderer, output_options, quiet_option, security_settings, server_security_options, session_option, stop_timeout_option
from .launch import launch, metrics_served


@click.command()
@click.argument("config", metavar="[CONFIG.toml|Procfile]", required=False)
@click.option("--concurrency", "-c", multiple=True, metavar="NAME=N", help="Run N instances of NAME (its `instances`; 0: none); repeatable, or NAME=N,NAME=N as foreman takes it.")
@click.option("--env-file", type=click.Path(dir_okay=False), help="Variables (KEY=VALUE lines) for every engine, in place of the Procfile's .env (or the config's [supervisor] env_file).")
@click.option("--port", "-p", type=click.IntRange(1, 65535), help=f"A Procfile's $PORT base, as foreman's: process K (from 0) gets base + 100*K, its instances +1 each. Default: PORT in the env file, else in the environment, else {BASE_PORT}.")
@session_option
@click.option("--listen", metavar="tcp://HOST:PORT", help="Also listen on TCP: control on PORT, pub on PORT+1, pull on PORT+2.")
@server_security_options
@stop_timeout_option(None)
@click.option("--keep", is_flag=True, help="Keep running when every engine has exited (for `bus start`, `bus spawn` and remote engines: then CONFIG.toml may list none, or be left out); stop with Ctrl-C or `bus down`.")
@journal_option
@click.option("--metrics", metavar="HOST:PORT", help="Serve Prometheus metrics at http://HOST:PORT/metrics (the metrics extra; port 0 picks a free one).")
@output_options
@quiet_option
@click.option("--settings", metavar="JSON", hidden=True, help="A [supervisor] table as JSON, over the file's (bus.app passes its settings so).")
@click.option("--host-pipe", is_flag=True, hidden=True, help="stdin is a pipe from the program that started us: stop everything when it ends (bus.app).")
@command_body
def up(config: str | None, concurrency: tuple[str, ...], env_file: str | None, port: int | None, session: str | None, listen: str | None, keys_dir: str | None, insecure: bool, stop_timeout: float | None, keep: bool, no_journal: bool, metrics: str | None, as_json: bool, plain: bool, shots: str | None, quiet: bool, settings: str | None, host_pipe: bool) -> int:
    """Start the engines CONFIG.toml (or a Procfile) lists and show them live; exit when all are done.

    A Procfile (named Procfile or Procfile.*, or any file that is not .toml and
    reads as `name: command` lines) runs each line's command by the shell, in the
    Procfile's directory, with the variables of the .env beside it and $PORT
    from 5000 (foreman's convention: README.md, "Procfiles").

    Engines are restarted as their `restart` policy says; one that ends with
    `on_exit = "stop-all"` stops the others. Exit code: 0 when every engine
    exited 0 (or was stopped), 1 when one did not, 3 when the bus could not
    start, 130 on Ctrl-C (engines are stopped, nothing is left running).

    \b
    Examples:
      bus up examples/demo.toml
      bus up Procfile -c web=2,worker=3          (.env beside it; web.1 PORT=5000, web.2 5001, worker.1 5100)
      bus up Procfile.dev --env-file dev.env -p 8000
      bus up --json examples/demo.toml > events.jsonl
      bus up --listen tcp://127.0.0.1:7010 examples/demo.toml
      bus up --listen tcp://0.0.0.0:7010 --keys keys/ examples/demo.toml
      bus up --keep services.toml      (then: bus status, bus restart NAME, bus down)
      bus up --keep                    (no engines yet: bus spawn -- CMD adds them)
      bus up --metrics 127.0.0.1:9700 examples/demo.toml   (Prometheus scrapes /metrics)
    """
    if config is None and not keep:
        raise UsageError("missing CONFIG.toml: name the engines' config file (or give --keep to start with none and add them with bus spawn)")
    if config is None and (concurrency or env_file or port):
        raise UsageError("-c, --env-file and --port need a CONFIG.toml or a Procfile to apply to")
    counts = parse_concurrency(concurrency)
    engines, table = load_engines(config, concurrency=counts, env_file=env_file, port=port, remote_only=keep) if config is not None else ((), {})
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
    with metrics_served(metrics, session, announce=not (as_json or quiet)):
        return launch(cfg, make_renderer(as_json, plain, shots, quiet), announce=not (as_json or quiet), host=sys.stdin.buffer if host_pipe else None)
