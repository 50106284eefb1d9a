"""examples/panels.py (seed 004): two daemons in live panels on a real terminal; Ctrl-C leaves nothing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from helpers import EXAMPLES, processes_using
from terminal import Terminal

pytestmark = pytest.mark.timeout(90)


def test_both_panels_show_their_daemons_and_ctrl_c_leaves_no_process(runtime_dir: Path) -> None:
    term = Terminal(["--interval", "0.05"], program=[sys.executable, str(EXAMPLES / "panels.py")])
    try:
        cycles = re.compile(r"(monitor|agent) cycle (\d+): ")

        def both_cycling(lines: list[str]) -> bool:
            seen = {m.group(1) for line in lines for m in cycles.finditer(line) if int(m.group(2)) >= 2}
            return seen == {"monitor", "agent"} and sum(line.count("running (pid") for line in lines) == 2

        screen = term.wait_for(both_cycling)
        text = "\n".join(screen)
        assert "checked db-1" in text and "ran tool: search" in text, text
        assert re.search(r"monitor.*agent", next(line for line in screen if "monitor" in line and "agent" in line)), "panels not side by side"
        assert processes_using(runtime_dir) != []  # (the daemons and the supervisor, for the check below to mean something)
        term.interrupt()
        done = term.wait_for(lambda lines: any("monitor: exited. agent: exited." in line for line in lines))
        assert done
        assert term.close() == 0
        assert processes_using(runtime_dir) == [], "a process outlived Ctrl-C"
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
            term.close()
