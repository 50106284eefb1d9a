"""The Node.js subscriber of docs/PROTOCOL.md section 9 (examples/node/subscriber.mjs), run
as written against a real supervisor: every event of the run once, in gseq order, through
sup.stop, screenshots byte for byte, locally (BUS_RUNTIME_DIR, BUS_SESSION) and over TCP."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers import ENGINES, EXAMPLES, ROOT, Collector, bus, bus_result, finish, free_ports, scripted, write_config

sys.path.insert(0, str(ENGINES))
from scripted import script  # noqa: E402

NODE_DIR = EXAMPLES / "node"
INSTALLED = ".bus-installed"  # written into node_modules once `npm install` succeeded
EARLY, LATE = (1, 120, 4), (2, 120, 4)  # seed, events, screenshots of the two engines


def test_the_protocol_doc_shows_the_node_example_exactly_as_examples_node_has_it() -> None:
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    section = text[text.index("## 9."): text.index("## 10.")]
    blocks = re.findall(r"```js\n(.*?)```", section, re.S)
    assert blocks, "section 9 has no js code block"
    assert blocks[0] == (NODE_DIR / "subscriber.mjs").read_text(), "docs/PROTOCOL.md section 9 and examples/node/subscriber.mjs differ"


@functools.cache
def node_modules(package_dir: Path = NODE_DIR) -> Path:
    """The dependencies of package_dir's package.json, installed once per content of that file (cached in tmp).
    A failing `npm install` fails the test that asked, with npm's message."""
    package = (package_dir / "package.json").read_bytes()
    cache = Path(tempfile.gettempdir()) / f"bus-node-{hashlib.sha256(package).hexdigest()[:16]}"
    if (cache / "node_modules" / INSTALLED).exists():
        return cache / "node_modules"
    work = Path(tempfile.mkdtemp(prefix=cache.name + "-"))
    try:
        shutil.copy(package_dir / "package.json", work)
        try:
            done = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=work, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"npm install did not finish within 240s:\n{exc.stderr or ''}")
        if done.returncode != 0:
            pytest.fail(f"npm install failed (exit {done.returncode}):\n{done.stderr}\n{done.stdout}")
        (work / "node_modules" / INSTALLED).write_text("")
        if cache.exists() and not (cache / "node_modules" / INSTALLED).exists():
            shutil.rmtree(cache, ignore_errors=True)  # (left half made by an earlier run)
        try:
            os.rename(work, cache)
        except OSError:
            pass  # another run installed it meanwhile
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert (cache / "node_modules" / INSTALLED).exists()
    return cache / "node_modules"


class NodeSubscriber:
    """`node subscriber.mjs [ADDRESS]` with the test's environment; its JSON lines read as they come."""

    def __init__(self, directory: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}  # (BUS_RUNTIME_DIR, BUS_SESSION: set)
        self.proc = subprocess.Popen(["node", str(directory / "subscriber.mjs"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, env=env, cwd=directory)
        self.lines: list[dict[str, Any]] = []
        self._new: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._new.put(json.loads(line))
        self._new.put(None)

    def wait_for(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        if any(wanted(line) for line in self.lines):
            return
        while True:
            try:
                line = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the Node subscriber printed no such line within {timeout}s; stderr: {self._stderr()}") from None
            assert line is not None, f"the Node subscriber ended first (exit {self.proc.wait()}): {self._stderr()}"
            self.lines.append(line)
            if wanted(line):
                return

    def finish(self, timeout: float = 30) -> tuple[int, list[dict[str, Any]], str]:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the Node subscriber did not end within {timeout}s of sup.stop") from None
        while (line := self._new.get(timeout=10)) is not None:  # (to the end of its output)
            self.lines.append(line)
        return code, self.lines, self._stderr()

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def example(tmp_path: Path) -> Path:
    """A copy of examples/node with its dependencies installed (skips only without node or npm)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not on PATH: the Node.js example cannot run here")
    directory = tmp_path / "node"
    directory.mkdir()
    for name in ("subscriber.mjs", "package.json"):
        shutil.copy(NODE_DIR / name, directory)
    (directory / "node_modules").symlink_to(node_modules(), target_is_directory=True)
    return directory


def shots_of(seed: int, events: int, shots: int) -> list[dict[str, Any]]:
    return [{"size": len(kw["data"]), "sha256": hashlib.sha256(kw["data"]).hexdigest()} for method, kw in script(seed, events, shots) if method == "screenshot"]


def is_exit(engine: str) -> Callable[[dict[str, Any]], bool]:
    return lambda line: line["kind"] == "exit" and line["engine"] == engine


@pytest.mark.timeout(400)  # (the first npm install included)
def test_the_node_example_prints_every_event_once_in_order_with_screenshot_bytes(runtime_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = example(tmp_path)
    monkeypatch.setenv("BUS_SESSION", "node")
    port = free_ports(3)
    seed, count, shots = EARLY
    config = write_config(tmp_path, {"early": scripted("--seed", str(seed), "--events", str(count), "--shots", str(shots))})
    reference = Collector(lambda e: e.kind == "exit" and e.engine == "early")  # bus.Subscriber, from before the start
    reference.start()
    launcher = bus("up", "--keep", "-q", "--listen", f"tcp://127.0.0.1:{port}", str(config), stdout=subprocess.DEVNULL)
    clients: list[NodeSubscriber] = []
    try:
        assert reference.reached.wait(60), "engine early did not end"
        # Started once early has ended: its events (screenshots included) come from history.
        clients = [NodeSubscriber(node), NodeSubscriber(node, f"tcp://127.0.0.1:{port}")]
        for client in clients:
            client.wait_for(is_exit("early"))
        seed, count, shots = LATE  # ... and late's arrive live
        spawned = bus_result("spawn", "-n", "late", "--", *scripted("--seed", str(seed), "--events", str(count), "--shots", str(shots)))
        assert spawned.returncode == 0, spawned.stderr
        for client in clients:
            client.wait_for(is_exit("late"))
        assert bus_result("down").returncode == 0
        assert finish(launcher) == 0
        ended = [client.finish() for client in clients]
    finally:
        for client in clients:
            client.kill()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    events = reference.finish()
    assert events[-1].kind == "sup.stop"
    expected = [(e.gseq, e.kind, e.engine) for e in events]
    assert [gseq for gseq, _, _ in expected] == list(range(1, len(events) + 1))
    for (code, lines, stderr), how in zip(ended, ("local", "tcp")):
        assert code == 0 and stderr == "", f"{how}: exit {code}, stderr {stderr!r}"
        assert [(line["gseq"], line["kind"], line["engine"]) for line in lines] == expected, f"{how}: not every event once, in order"
        for engine, spec in (("early", EARLY), ("late", LATE)):
            got = [blob for line in lines if line["kind"] == "screenshot" and line["engine"] == engine for blob in line["blobs"]]
            assert got == shots_of(*spec), f"{how}: {engine}'s screenshots"
        pcts = [line["pct"] for line in lines if line["kind"] == "progress"]
        assert pcts == pytest.approx([e.fields()["pct"] for e in events if e.kind == "progress"]), f"{how}: pct"


@pytest.mark.timeout(300)
def test_the_node_example_says_in_one_line_that_no_supervisor_answers(tmp_path: Path) -> None:
    node = example(tmp_path)
    port = free_ports(1)
    client = NodeSubscriber(node, f"tcp://127.0.0.1:{port}")
    code, lines, stderr = client.finish(timeout=30)
    assert (code, lines) == (4, [])
    assert stderr == f"subscriber: no answer to hello from tcp://127.0.0.1:{port} within 5s\n"


@pytest.mark.timeout(400)
def test_the_node_example_refills_from_history_what_the_publisher_dropped_for_it(runtime_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = example(tmp_path)
    monkeypatch.setenv("BUS_SESSION", "node")
    go = tmp_path / "go"
    os.mkfifo(go)
    config = write_config(tmp_path, {"flood": scripted("--seed", "3", "--events", "30000", "--go", str(go))})
    reference = Collector(lambda e: e.kind == "exit" and e.engine == "flood")
    reference.start()
    launcher = bus("up", "--keep", "-q", str(config), stdout=subprocess.DEVNULL)
    client: NodeSubscriber | None = None
    try:
        client = NodeSubscriber(node)
        client.wait_for(lambda line: line["kind"] == "hello" and line["engine"] == "flood")  # live now
        client.proc.send_signal(signal.SIGSTOP)  # it reads nothing: past 10,000 queued, the publisher drops for it
        with open(go, "w") as fifo:
            fifo.write("x")
        assert reference.reached.wait(120), "engine flood did not end"
        client.proc.send_signal(signal.SIGCONT)
        client.wait_for(is_exit("flood"), timeout=120)
        assert bus_result("down").returncode == 0
        assert finish(launcher) == 0
        code, lines, stderr = client.finish()
    finally:
        if client is not None:
            client.kill()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    events = reference.finish()
    assert code == 0 and stderr == "", f"exit {code}, stderr {stderr!r}"
    assert len(events) > 30_000 and [(line["gseq"], line["kind"], line["engine"]) for line in lines] == [(e.gseq, e.kind, e.engine) for e in events]
