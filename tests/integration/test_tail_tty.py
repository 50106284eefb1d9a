"""`bus tail` on a terminal: run it in a pseudo-terminal and read the screen
through a terminal emulator (pyte), as a user would see it."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import bus, bus_result, finish, scripted, write_config
from terminal import Terminal


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
