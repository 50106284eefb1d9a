"""The `bus` command line: a click group, one module per command."""

from __future__ import annotations

import click

from bus._version import __version__

from .attach import attach
from .engines import restart, start, stop
from .hub import hub
from .jobs import jobs, retry, submit
from .keygen import keygen
from .run import run
from .spawn import forget, spawn
from .status import down, status
from .tail import runs, tail
from .up import up
from .web import web


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bus")
def main() -> None:
    """Run worker processes and watch what they do, live and losslessly.

    \b
    Examples:
      bus up examples/demo.toml        run the engines a config lists
      bus run -- python worker.py      run one command as an engine
      bus tail --json                  follow the local supervisor
      bus runs                         runs in the journal (bus tail --run ID)
      bus status                       engines, states, counters
      bus restart audit                restart an engine (or one instance: audit.2)
      bus spawn -- python worker.py    add an engine to a running supervisor (bus up --keep)
      bus submit library '{"path": "a.flac"}'   put a job in a work queue (engines with queue = "library")
      bus jobs library --state dead    jobs and what became of them (bus retry ID runs a dead one again)
      bus down                         stop the local supervisor
      bus attach tcp://head:7010 -- python worker.py   join a supervisor elsewhere as a remote engine
      bus hub east=tcp://a:7010 west=tcp://b:7010   one view of several supervisors
      bus keygen viewer                a CurveZMQ key pair for TCP (docs/SECURITY.md)
      bus web                          a live dashboard in the browser (docs/WEB.md)
    """


for command in (up, run, attach, hub, tail, status, runs, start, stop, restart, spawn, forget, submit, jobs, retry, down, keygen, web):
    main.add_command(command)
