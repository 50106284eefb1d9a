"""Seed 004's terminal UI on bus: two long-running daemons, a live panel each; Ctrl-C stops both.

    python examples/panels.py [--interval SECONDS]

The seed's SubprocessManager needs asyncio subprocesses, readline with
timeouts (daemons never close stdout), PYTHONUNBUFFERED, process groups and
a SIGTERM-wait-SIGKILL sequence, and still leaks processes when the TUI is
killed. Here the private supervisor does all of that: each panel follows its
daemon's events (its lines, its progress markers, its state), Ctrl-C stops
both within their stop timeout, and if this program is killed outright its
daemons go with it within a second or two.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bus import Bus, Handle

DAEMON = Path(__file__).resolve().parent / "daemon.py"
LINES = 12


@dataclass
class View:
    """What one panel shows; written by its reader thread, drawn by the main one."""

    name: str
    state: str = "starting"
    pid: int | None = None
    phase: str = ""
    pct: float = 0.0
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LINES))

    def read(self, handle: Handle) -> None:
        try:
            for event in handle.events():
                kind = event.kind
                if kind == "state":
                    self.state, self.pid = event.state, event.pid  # type: ignore[attr-defined]
                elif kind == "log":
                    self.lines.append(event.message)  # type: ignore[attr-defined]
                elif kind == "progress":
                    self.phase, self.pct = event.phase, event.pct or 0.0  # type: ignore[attr-defined]
        except Exception as exc:  # shown in its panel, not lost on a thread's stderr
            self.state = f"not followed: {exc}"

    def panel(self, colour: str) -> Panel:
        head = Table.grid(expand=True)
        head.add_row(Text(f"{self.state}" + (f" (pid {self.pid})" if self.pid else ""), style="bold"), Text(self.phase, justify="right"))
        body = Group(head, ProgressBar(total=100, completed=self.pct), Text("\n".join(self.lines)))
        return Panel(body, title=self.name, border_style=colour)


class Said(logging.Handler):
    """What the supervisor says (the `bus` logger), kept for a line under the panels instead of written over them."""

    def __init__(self) -> None:
        super().__init__()
        self.last: deque[str] = deque(maxlen=2)

    def emit(self, record: logging.LogRecord) -> None:
        self.last.append(record.getMessage())


def screen(views: list[View], said: Said) -> Group:
    grid = Table.grid(expand=True)
    grid.add_row(*(v.panel(c) for v, c in zip(views, ("blue", "green"))))
    return Group(grid, Text("\n".join(said.last), style="dim"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    said = Said()
    logging.getLogger("bus").addHandler(said)
    logging.getLogger("bus").propagate = False
    with Bus.start(stop_timeout=3) as bus:
        views, readers = [], []
        for role in ("monitor", "agent"):
            handle = bus.spawn([sys.executable, str(DAEMON), role, "--interval", str(args.interval)], name=role)
            view = View(role)
            views.append(view)
            readers.append((handle, threading.Thread(target=view.read, args=(handle,), daemon=True)))
        for _, reader in readers:
            reader.start()
        try:
            with Live(screen(views, said), refresh_per_second=8) as live:
                frame = threading.Event()  # (never set: a timer. Not Thread.join(timeout): a Ctrl-C inside it can leave
                while any(r.is_alive() for _, r in readers):  # that thread marked ended while it runs, on Python <= 3.12)
                    frame.wait(0.125)
                    live.update(screen(views, said))
        except KeyboardInterrupt:
            for handle, _ in readers:
                handle.stop()
            for _, reader in readers:
                reader.join()  # each ends with its daemon's last state
            print(" ".join(f"{v.name}: {v.state}." for v in views))
    return 0


if __name__ == "__main__":
    sys.exit(main())
