"""`bus run [--name N] -- CMD ARGS...`"""

from __future__ import annotations

import click

from bus.runtime import default_name, engine_name
from bus.supervisor import EngineSpec, SupervisorConfig

from .common import command_body, journal_option, make_renderer, output_options, quiet_option, security_settings, server_security_options, session_option, stop_timeout_option
from .launch import launch


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", "-n", metavar="NAME", help="Engine name (default: the script's or program's name).")
@session_option
@click.option("--listen", metavar="tcp://HOST:PORT", help="Also listen on TCP: control on PORT, pub on PORT+1, pull on PORT+2.")
@server_security_options
@stop_timeout_option(10.0)
@journal_option
@output_options
@quiet_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@command_body
def run(name: str | None, session: str | None, listen: str | None, keys_dir: str | None, insecure: bool, stop_timeout: float, no_journal: bool, as_json: bool, plain: bool, shots: str | None, quiet: bool, command: tuple[str, ...]) -> int:
    """Run one command as an engine and show what it does; exit with its exit code.

    The command may use the engine SDK, or just print lines: lines of the form
    ##PROGRESS:{"phase": "scan", "pct": 40} become progress events, the rest
    log events. A command killed by signal N exits 128+N; one that cannot be
    found exits 127.

    \b
    Examples:
      bus run -- python worker.py --fast
      bus run --name crawl --json -- ./crawl.sh > events.jsonl
    """
    engine = engine_name(name, "--name") if name else default_name(command)
    spec = EngineSpec(name=engine, command=tuple(command), cwd=None)
    settings = security_settings({}, listen, keys_dir, insecure)
    cfg = SupervisorConfig(engines=(spec,), session=session, stop_timeout=stop_timeout, exit_code_from=engine, journal=not no_journal, **settings)
    return launch(cfg, make_renderer(as_json, plain, shots, quiet), announce=not (as_json or quiet))
