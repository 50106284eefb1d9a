"""`bus tail` on a terminal: run it in a pseudo-terminal and read the screen
through a terminal emulator (pyte), as a user would see it."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Callable

import pyte
from helpers import ROOT, bus, bus_result, finish, scripted, write_config

COLS, ROWS = 140, 40


class Terminal:
    """A program on a pseudo-terminal; `screen` is what the terminal shows."""

    def __init__(self, args: list[str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
        for name in ("NO_COLOR", "TERM_PROGRAM", "CI"):
            env.pop(name, None)
        self.proc = subprocess.Popen([sys.executable, "-m", "bus", *args], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, start_new_session=True)
        os.close(slave)
        self.master = master
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the program closed the terminal
                chunk = b""
            with self.changed:
                if not chunk:
                    self.changed.notify_all()
                    return
                self.stream.feed(chunk)
                self.changed.notify_all()

    def lines(self) -> list[str]:
        with self.changed:
            return [line.rstrip() for line in self.screen.display]

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float = 60) -> list[str]:
        """The screen, once `condition(lines)` holds on it; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                lines = [line.rstrip() for line in self.screen.display]
                if condition(lines):
                    return lines
                left = deadline - time.monotonic()
                assert left > 0 and self.reader.is_alive(), "the screen never showed it:\n" + "\n".join(lines)
                self.changed.wait(left)

    def close(self) -> int:
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(10)
        os.close(self.master)
        return code


def bar_line(name: str) -> re.Pattern[str]:
    """An engine's bar: name, phase, the bar itself, percent, count, rate."""
    return re.compile(rf"^{name}\s+run\s+[━╸╺]+\s+(\d+)%\s+(\d+)/(\d+)\s+([\d,.]+/s)?")


def test_tail_on_a_terminal_shows_a_bar_per_engine_and_log_lines(runtime_dir: Path, tmp_path: Path) -> None:
    names = ("alpha", "beta")
    config = write_config(tmp_path, {name: scripted("--seed", str(i), "--events", "400", "--pace", "5") for i, name in enumerate(names)})
    launcher = bus("up", "--json", str(config), stdout=open(tmp_path / "up.jsonl", "w"))
    term = Terminal(["tail"])
    try:

        def mid_run(lines: list[str]) -> bool:
            """Both bars part way, each with its rate (shown from its second count on)."""
            bars = [m for name in names for line in lines if (m := bar_line(name).match(line))]
            return len(bars) == 2 and all(0 < int(m.group(1)) < 100 and m.group(4) for m in bars)

        screen = term.wait_for(mid_run)
        for name in names:
            bar = next(m for line in screen if (m := bar_line(name).match(line)))
            assert int(bar.group(3)) == 400 and 0 < int(bar.group(2)) < 400, bar.group(0)
            assert float(bar.group(4)[:-2].replace(",", "")) > 0, bar.group(0)
        logs = [line for line in screen if re.match(r"^\d\d:\d\d:\d\d (alpha|beta)\s+\| .*line \d+ 0\.\d{6}$", line)]
        assert logs, "no log line on screen:\n" + "\n".join(screen)
        assert screen.index(logs[-1]) < min(i for i, line in enumerate(screen) if bar_line("alpha").match(line) or bar_line("beta").match(line)), "log lines scroll above the bars"


        assert term.close() == 0  # the run ended: tail exits
        final = term.lines()
        for i, name in enumerate(names):
            assert any(re.match(rf"^{name}\s+done\s+━+\s+100%", line) for line in final), "\n".join(final)
            assert any(re.match(rf"^\d\d:\d\d:\d\d {name}\s+\| result: events=400 shots=0 seed={i}$", line) for line in final)
        assert any("supervisor stopped: all engines exited (exit code 0)" in line for line in final)
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
            term.close()
        finish(launcher, 60)
    assert bus_result("status").returncode != 0  # the run is over: nothing left listening
