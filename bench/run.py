"""The benchmark: bus against its baselines, in one run, on the same events.

    python -m bench                 (from the repository root; --quick for a smoke run)

Prints a table and writes bench/results.json. Every figure of ours is shown
with its ratio to the baselines measured in the same run:

- zmq.proxy: PULL -> PUB in C, the ceiling for any relay (same SDK engine, same subscriber code);
- multiprocessing.Queue and multiprocessing.Manager().Queue(): the same events, pickled;
- stdout: `##PROGRESS:{json}` lines read and parsed by the parent, screenshots in base64.

Ours is the real supervisor (`bus up -q`), with validation, numbering, history
and the journal on, and real SDK engines (with their crash spool).
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bus import Subscriber  # noqa: E402
from bus._version import __version__  # noqa: E402
from bus.control_client import ControlClient  # noqa: E402
try:
    from bus.protocol.codec import decode_sent  # noqa: E402
except ImportError:  # a tree from before batches (measured "before" in one sitting): one event per message
    from bus.protocol import decode as _decode  # noqa: E402

    def decode_sent(frames: Any) -> list[Any]:
        return [_decode(frames)]
from bus.runtime import HAS_IPC, Session, live_info, resolve  # noqa: E402

WORKERS = ROOT / "bench" / "workers.py"
SESSION = "bench"
MB = 1024 * 1024


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.tmp = Path(tempfile.mkdtemp(prefix="bb"))
        self.env = {**os.environ, "BUS_RUNTIME_DIR": str(self.tmp / "rt"), "BUS_STATE_DIR": str(self.tmp / "st"), "BUS_SESSION": SESSION}
        for name in ("BUS_ENDPOINT", "BUS_ENGINE", "BUS_KEY", "BUS_SERVER_KEY"):
            self.env.pop(name, None)
        os.environ.update({k: self.env[k] for k in ("BUS_RUNTIME_DIR", "BUS_STATE_DIR", "BUS_SESSION")})
        self.ctx = zmq.Context()
        self.results: dict[str, Any] = {}
        self.go = self.tmp / "go"
        os.mkfifo(self.go)
        self._go_fd = os.open(self.go, os.O_RDWR)  # held open: a worker's open() never blocks, its read(1) waits

    def n(self, full: int) -> int:
        return max(1, full // 20) if self.quick else full

    def release(self, workers: int = 1) -> float:
        os.write(self._go_fd, b"g" * workers)
        return time.perf_counter()

    # -- processes ---------------------------------------------------------------------

    def worker(self, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(WORKERS), *args], env={**self.env, **(env or {})}, stderr=subprocess.PIPE, **kwargs)

    def supervisor(self, engines: dict[str, dict[str, Any]], *, keep: bool = False, **settings: Any) -> subprocess.Popen[bytes]:
        config = self.config(engines, **settings)
        return subprocess.Popen([sys.executable, "-m", "bus", "up", "-q", *(["--keep"] if keep else []), str(config)], env=self.env, cwd=ROOT)

    def config(self, engines: dict[str, dict[str, Any]], **settings: Any) -> Path:
        """The TOML config for these engines (and a fresh journal)."""
        lines = ["[supervisor]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
        for name, spec in engines.items():
            lines.append(f'[engines."{name}"]')
            lines += [f"{k} = {_toml(v)}" for k, v in spec.items()]
        config = self.tmp / "bench.toml"
        config.write_text("\n".join(lines) + "\n")
        shutil.rmtree(self.tmp / "st", ignore_errors=True)  # each run starts with an empty journal
        return config

    def engine(self, *args: str, instances: int = 1, hwm: int = 1000) -> dict[str, Any]:
        return {
            "command": [sys.executable, str(WORKERS), *args],
            "env": {"BUS_SNDHWM": str(hwm), "BUS_LINGER": "120"},  # a deep queue must drain at exit, not be cut at 3 s
            "droppable": [],  # nothing may be dropped: the relay's own speed is measured
            "instances": instances,
            "heartbeat_timeout": 0,
        }

    def local(self, name: str) -> str:
        """The session's local endpoint `name` (ctl, pub, pull): its ipc file, or without ipc
        (Windows, BUS_LOCAL_TCP=1) the 127.0.0.1 port its supervisor wrote in supervisor.json."""
        where = Session(SESSION, self.tmp / "rt" / SESSION)
        if HAS_IPC:
            return where.ipc(name)
        info = live_info(where, 60)
        if info is None:
            raise RuntimeError(f"no supervisor wrote {where.dir}/supervisor.json within 60 s")
        return info["control" if name == "ctl" else name][0]

    def sub(self, endpoint: str, prefix: bytes) -> zmq.Socket:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)  # the benchmark's reader never drops
        sock.setsockopt(zmq.RCVBUF, 4 * MB)
        sock.setsockopt(zmq.SUBSCRIBE, prefix)
        sock.connect(endpoint)
        return sock

    def down(self, proc: subprocess.Popen[bytes]) -> None:
        client = ControlClient(self.ctx, resolve(None), timeout=10)
        try:
            client.request("down")
        except Exception:  # noqa: BLE001 - it may have ended by itself
            pass
        client.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- ours ----------------------------------------------------------------------------

    def ours(self, worker_args: list[str], kind: str, count: int, *, hwm: int = 1000, on_event: Callable[[Any], None] | None = None) -> tuple[float, float]:
        """Run one SDK engine under the supervisor; receive `count` events of `kind`
        with a bus.Subscriber (which refills any gap from history: nothing is lost).
        Returns (seconds from release to the last event, the engine's emit seconds)."""
        proc = self.supervisor({"e": self.engine(*worker_args, "--go", str(self.go), hwm=hwm)})
        try:
            with Subscriber(kinds=[kind], history=None, timeout=120, connect_timeout=60, ctx=self.ctx) as sub:
                sub.wait_ready(timeout=60)
                cpu0 = cpu_seconds(proc.pid)
                t0 = self.release()
                for _ in range(count):
                    event = sub.recv()
                    if event is None:
                        raise RuntimeError(f"the run ended early: lost {sub.lost}, refills {sub.refills}")
                    if on_event is not None:
                        on_event(event)
                last = time.perf_counter()
                self.supervisor_cpu = cpu_seconds(proc.pid) - cpu0  # (its journal included: flushed by the time the last event is out? nearly)
                if sub.lost:
                    raise RuntimeError(f"events lost: {sub.lost}")
            return last - t0, self._engine_emit_seconds()
        finally:
            self.down(proc)

    def _engine_emit_seconds(self) -> float:
        # The engine's stderr is captured as log events; read its line from the journal.
        from bus import Replay

        for event in Replay(run="last", kinds=["log"]):  # only the logs: not every event of the run
            if event.kind == "log" and event.fields()["message"].startswith("emit_seconds="):
                return float(event.fields()["message"].split("=", 1)[1])
        return float("nan")

    def _receive(self, sock: zmq.Socket, count: int, on_event: Callable[[Any], None] | None) -> float:
        """The proxy's subscriber: decodes every event, as ours does (`count` events)."""
        got = 0
        while got < count:
            if not sock.poll(120_000):
                raise RuntimeError(f"stalled after {got} of {count} messages")
            frames = sock.recv_multipart()
            if frames == [b"probe"]:
                continue  # a late probe from the start-up handshake
            for event in decode_sent(frames):  # (the SDK's batches, relayed as they came)
                if on_event is not None:
                    on_event(event)
                got += 1
        return time.perf_counter()

    # -- zmq.proxy ---------------------------------------------------------------------

    def proxied(self, worker_args: list[str], count: int, *, hwm: int = 1000, on_event: Callable[[Any], None] | None = None) -> tuple[float, float]:
        pull, pub = f"ipc://{self.tmp}/px-pull", f"ipc://{self.tmp}/px-pub"
        proxy = self.worker("proxy", pull, pub)
        sub = self.sub(pub, b"")
        probe = self.ctx.socket(zmq.PUSH)
        probe.setsockopt(zmq.LINGER, 0)
        probe.connect(pull)
        try:
            while True:  # until the subscription has reached the proxy's PUB
                probe.send(b"probe")
                if sub.poll(20):
                    break
            while sub.poll(50):
                sub.recv()
            engine = self.worker(*worker_args, "--go", str(self.go), env={"BUS_ENDPOINT": pull, "BUS_ENGINE": "e", "BUS_SNDHWM": str(hwm), "BUS_DROPPABLE": "none", "BUS_LINGER": "120"})
            t0 = self.release()
            last = self._receive(sub, count + 1, on_event)  # hello, then the events
            _, err = engine.communicate(timeout=60)
            emit = float(err.decode().split("emit_seconds=")[-1].split()[0])
            return last - t0, emit
        finally:
            probe.close(linger=0)
            sub.close(linger=0)
            proxy.kill()
            proxy.wait()

    # -- the figures ----------------------------------------------------------------------

    def throughput(self) -> None:
        n = self.n(100_000)
        ours, ours_emit = self.ours(["sdk-progress", str(n)], "progress", n, hwm=n + 10)
        proxy, proxy_emit = self.proxied(["sdk-progress", str(n)], n, hwm=n + 10)
        cpu = self.supervisor_cpu
        queue = mp_queue(n, manager=False)
        manager = mp_queue(self.n(20_000), manager=True)
        stdout, stdout_emit = self.stdout_progress(n)
        r = self.results
        r["1_small_events_per_s"] = {
            "ours": n / ours, "zmq.proxy": n / proxy, "multiprocessing.Queue": queue[0], "Manager().Queue": manager[0], "stdout JSON lines": n / stdout,
        }
        r.setdefault("9_supervisor_cpu_us_per_event", {})["small events (figure 1)"] = 1e6 * cpu / n
        r["5_emit_us"] = {
            "ours": 1e6 * proxy_emit / n, "ours, while the supervisor relays": 1e6 * ours_emit / n,
            "multiprocessing.Queue.put": queue[1], "Manager().Queue.put": manager[1], "stdout print(json)": 1e6 * stdout_emit / n,
        }

    def stdout_progress(self, n: int) -> tuple[float, float]:
        proc = self.worker("stdout-progress", str(n), "--go", str(self.go), stdout=subprocess.PIPE)
        assert proc.stdout is not None
        t0 = self.release()
        got = 0
        for line in proc.stdout:
            if line.startswith(b"##PROGRESS:"):
                json.loads(line[11:])
                got += 1
        last = time.perf_counter()
        _, err = proc.communicate()
        assert got == n, got
        return last - t0, float(err.decode().split("emit_seconds=")[-1].split()[0])

    def latency(self) -> None:
        rate, seconds = 1000.0, 1.0 if self.quick else 3.0
        n = int(rate * seconds)
        ours: list[float] = []
        proxy: list[float] = []

        def ours_one(event: Any) -> None:
            ours.append(time.time() - event.ts)

        def proxy_one(event: Any) -> None:
            if event.kind == "progress":
                proxy.append(time.time() - event.ts)

        self.ours(["sdk-paced", str(rate), str(seconds)], "progress", n, on_event=ours_one)
        supervisor_cpu = self.supervisor_cpu
        self.proxied(["sdk-paced", str(rate), str(seconds)], n, on_event=proxy_one)
        self.results["2_latency_us_at_1000_per_s"] = {
            "ours p50": 1e6 * pct(ours, 50), "ours p99": 1e6 * pct(ours, 99),
            "zmq.proxy p50": 1e6 * pct(proxy, 50), "zmq.proxy p99": 1e6 * pct(proxy, 99),
            "supervisor CPU per event (us)": 1e6 * supervisor_cpu / n,  # its hop, in Python, at this rate
        }

    def screenshots(self) -> None:
        count, size = self.n(100), MB
        ours, _ = self.ours(["sdk-shots", str(count), str(size)], "screenshot", count)
        proxy, _ = self.proxied(["sdk-shots", str(count), str(size)], count)
        proc = self.worker("stdout-shots", str(count), str(size), "--go", str(self.go), stdout=subprocess.PIPE)
        assert proc.stdout is not None
        t0 = self.release()
        got = 0
        for line in proc.stdout:
            obj = json.loads(line[11:])
            assert len(base64.b64decode(obj["data"])) == size
            got += 1
        stdout = time.perf_counter() - t0
        proc.wait()
        total = count * size / MB
        self.results["3_screenshot_MB_per_s"] = {"ours": total / ours, "zmq.proxy": total / proxy, "stdout base64 lines": total / stdout}

    def many(self) -> None:
        engines, each, subscribers = 50, self.n(2000), 5
        total = engines * each
        proc = self.supervisor({"w": self.engine("sdk-progress", str(each), "--go", str(self.go), instances=engines)})
        spawn = mp.get_context("spawn")
        ready, done = spawn.Queue(), spawn.Queue()
        subs = [spawn.Process(target=count_all, args=(str(self.tmp / "rt" / SESSION), total, engines, ready, done)) for _ in range(subscribers)]
        try:
            for p in subs:
                p.start()
            for _ in subs:
                ready.get(timeout=120)
            t0 = self.release(engines)
            outcomes = [done.get(timeout=300) for _ in subs]
            last = max(o["last"] for o in outcomes)
        finally:
            for p in subs:
                p.join(30)
            self.down(proc)
        lost = sum(o["lost"] for o in outcomes)
        self.results["4_fifty_engines_five_subscribers"] = {
            "events": total, "aggregate_events_per_s": total / (last - t0), "delivered_per_s": subscribers * total / (last - t0),
            "lost": lost, "every_subscriber_complete": all(o["count"] == total and o["in_order"] for o in outcomes),
        }

    def memory(self) -> None:
        engines, each = 4, self.n(250_000)
        proc = self.supervisor({"m": self.engine("sdk-progress", str(each), "--go", str(self.go), instances=engines)})
        stalled = self.ctx.socket(zmq.SUB)  # subscribes, never reads: zmq's default 1,000-message queue fills, then the publisher's
        stalled.setsockopt(zmq.LINGER, 0)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect(self.local("pub"))
        try:
            with Subscriber(kinds=["exit"], timeout=600, connect_timeout=60, history=None) as sub:
                sub.wait_ready(timeout=60)
                if not stalled.poll(60_000):
                    raise RuntimeError("the stalled subscriber was never welcomed")
                t0 = self.release(engines)
                exits = 0
                while exits < engines:
                    event = sub.recv(timeout=600)
                    exits += event is not None and event.kind == "exit"
                seconds = time.perf_counter() - t0
                status = sub.control.request("status")[0]
            rss, peak = memory(status["pid"])
        finally:
            stalled.close(linger=0)
            self.down(proc)
        self.results["6_supervisor_rss_after_1M_events_one_stalled_subscriber"] = {
            "events": engines * each, "accepted": status["counters"]["accepted"], "seconds": seconds,
            "rss_MiB": rss / MB, "peak_MiB": peak / MB,
        }

    def stop_many(self) -> None:
        engines = 100 if not self.quick else 10
        proc = self.supervisor({"idle": self.engine("sdk-idle", instances=engines)}, stop_timeout=10)
        with Subscriber(kinds=["hello", "sup.stop", "exit"], timeout=120, connect_timeout=60) as sub:
            hellos = 0
            while hellos < engines:
                hellos += sub.recv(timeout=120).kind == "hello"
            t0 = time.perf_counter()
            sub.control.request("down")
            exits = graceful = 0
            while (event := sub.recv(timeout=120)) is not None and event.kind != "sup.stop":
                if event.kind == "exit":
                    exits += 1
                    graceful += event.fields()["signame"] != "SIGKILL"
            seconds = time.perf_counter() - t0
        proc.wait(60)
        self.results["7_stop_100_engines_s"] = {"engines": engines, "seconds": seconds, "exited": exits, "without SIGKILL": graceful}

    def lines(self) -> None:
        """A chatty child (N short lines): its own time piped into cat, under `bus up -q` (journal
        on), under `bus up` with the display piped to a file; and `bus tail` piped, beside it."""
        n = self.n(100_000)
        done = self.tmp / "chatty.done"

        def child_seconds() -> tuple[float, float]:
            seconds, end = done.read_text().split()
            done.unlink()
            return float(seconds), float(end)

        chatty = [sys.executable, str(WORKERS), "chatty", str(n), str(done)]
        cat = subprocess.run(["sh", "-c", " ".join(chatty) + " | cat > /dev/null"], env=self.env, check=True)
        alone, _ = child_seconds()
        assert cat.returncode == 0
        engine = {"command": chatty, "heartbeat_timeout": 0}
        t0 = time.perf_counter()
        quiet = self.supervisor({"chatty": engine})
        if quiet.wait(600) != 0:
            raise RuntimeError(f"bus up -q exited {quiet.returncode}")
        quiet_total = time.perf_counter() - t0
        quiet_child, _ = child_seconds()
        from bus import Replay

        journaled = sum(1 for e in Replay(run="last", kinds=["log"]) if e.fields()["stream"] == "stdout")
        # the supervisor's CPU per line: the same run, kept up, measured from the release to the engine's exit
        proc = self.supervisor({"chatty": {**engine, "command": [*chatty, "--go", str(self.go)]}}, keep=True)
        try:
            with Subscriber(kinds=["exit"], history=None, timeout=120, connect_timeout=60, ctx=self.ctx) as sub:
                sub.wait_ready(timeout=60)
                cpu0 = cpu_seconds(proc.pid)
                self.release()
                sub.recv(timeout=300)  # its exit: published after its last line
                self.supervisor_lines_cpu = cpu_seconds(proc.pid) - cpu0
        finally:
            self.down(proc)
        child_seconds()
        shown = self.tmp / "shown.txt"
        config = self.config({"chatty": engine})
        with open(shown, "w") as out:
            shown_proc = subprocess.run([sys.executable, "-m", "bus", "up", str(config)], env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL)
        shown_child, _ = child_seconds()
        shown_lines = sum(1 for line in shown.read_text().splitlines() if " of a chatty child" in line)
        assert shown_proc.returncode == 0
        # bus tail, piped to us, following a run whose child waits until the tail is there
        proc = self.supervisor({"chatty": {**engine, "command": [*chatty, "--go", str(self.go)]}})
        tail = subprocess.Popen([sys.executable, "-m", "bus", "tail", "--plain"], env=self.env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert tail.stdout is not None
        try:
            for line in tail.stdout:  # its first lines: the supervisor and the engine started
                if "chatty" in line:
                    break
            self.release()
            got, last = 0, 0.0
            for line in tail.stdout:
                if " of a chatty child" in line:
                    got += 1
                    if got == n:
                        last = time.time()
                        break
            tail.wait(60)
        finally:
            if tail.poll() is None:
                tail.kill()
            proc.wait(60)
        _, tail_end = child_seconds()
        self.results.setdefault("9_supervisor_cpu_us_per_event", {})["output lines (figure 8)"] = 1e6 * self.supervisor_lines_cpu / n
        self.results["8_chatty_child_100k_lines"] = {
            "lines": n, "piped into cat s": alone, "lines/s into cat": n / alone,
            "under bus up -q s": quiet_child, "lines/s under bus up -q": n / quiet_child, "bus up -q start to exit s": quiet_total,
            "journaled": journaled, "under bus up, display piped s": shown_child, "shown": shown_lines,
            "bus tail piped: last line after the child's end s": last - tail_end if got == n else float("inf"), "bus tail printed": got,
        }

    def startup(self) -> None:
        """`bus run -q -- true` from start to exit, beside `bus --version` (medians of 5, in turn)."""
        runs: dict[str, list[float]] = {"bus --version": [], "bus run -q -- true": []}
        for _ in range(2 if self.quick else 5):
            for name, args in (("bus --version", ["--version"]), ("bus run -q -- true", ["run", "-q", "--", "true"])):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "bus", *args], env=self.env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
                runs[name].append(time.perf_counter() - t0)
        from bus import Replay

        kinds = [e.kind for e in Replay(run="last")]
        self.results["10_bus_run_true_s"] = {
            **{name: statistics.median(times) for name, times in runs.items()},
            "its exit and sup.stop in the journal": "exit" in kinds and kinds[-1] == "sup.stop",
        }

    def scale(self) -> None:
        """Start and end N trivial engines (`true`): the fleet's cost per engine must not grow with N."""
        sizes = (100, 1000) if self.quick else (1000, 10_000)
        seconds = {n: self._trivial_run(n) for n in (1, *sizes)}
        small, large = sizes
        per = {n: (seconds[n] - seconds[1]) / n for n in sizes}  # the cost of an empty run taken off
        self.results["11_start_trivial_engines"] = {
            "empty run s": seconds[1], **{f"{n:,} engines s": seconds[n] for n in sizes},
            **{f"{n:,} engines ms per engine": 1000 * per[n] for n in sizes},
            f"per engine, {large:,} / {small:,}": per[large] / per[small],
        }

    def _trivial_run(self, n: int) -> float:
        engines = {f"t{k}": {"command": ["true"], "instances": min(1000, n - 1000 * k), "heartbeat_timeout": 0} for k in range((n + 999) // 1000)}
        t0 = time.perf_counter()
        proc = self.supervisor(engines)
        if proc.wait(600) != 0:
            raise RuntimeError(f"{n} trivial engines: bus up exited {proc.returncode}")
        return time.perf_counter() - t0

    def spawn(self) -> None:
        """Figure 12 (bench/spawn.py): spawn to first event, beside Popen to first line."""
        from bench.spawn import measure

        self.results["12_spawn_to_first_event"] = measure(5 if self.quick else 30)

    def queues(self) -> None:
        """Figure 13 (bench/queues.py): jobs/s through a work queue beside a multiprocessing pool; submit to start."""
        from bench.queues import measure

        self.results.update(measure(self))

    def close(self) -> None:
        os.close(self._go_fd)
        self.ctx.destroy(linger=0)
        shutil.rmtree(self.tmp, ignore_errors=True)


def count_all(run_dir: str, total: int, engines: int, ready: Any, done: Any) -> None:
    """A subscriber process (measure 4): every progress event, in order per engine."""
    seen: dict[str, int] = {}
    in_order = True
    count = 0
    with Subscriber(run_dir, kinds=["progress"], timeout=300, connect_timeout=60) as sub:
        sub.wait_ready(timeout=60)
        ready.put(True)
        while count < total:
            event = sub.recv(timeout=300)
            if event is None:
                break
            in_order &= event.seq == seen.get(event.engine, 1) + 1  # seq 1 is the engine's hello
            seen[event.engine] = event.seq
            count += 1
        done.put({"count": count, "lost": len(sub.lost), "in_order": in_order and len(seen) == engines, "last": time.perf_counter()})


def mp_queue(n: int, *, manager: bool) -> tuple[float, float]:
    """(events per second, microseconds per put) through a multiprocessing queue."""
    spawn = mp.get_context("spawn")
    mgr = spawn.Manager() if manager else None
    queue = mgr.Queue() if mgr else spawn.Queue()
    go, put_us = spawn.Event(), spawn.Queue()
    child = spawn.Process(target=_put_events, args=(queue, n, go, put_us))
    child.start()
    queue.get(timeout=60)  # the child is up
    go.set()
    t0 = time.perf_counter()
    for _ in range(n):
        queue.get(timeout=60)
    seconds = time.perf_counter() - t0
    us = put_us.get(timeout=60)
    child.join(30)
    if mgr:
        mgr.shutdown()
    return n / seconds, us


def _put_events(queue: Any, n: int, go: Any, put_us: Any) -> None:
    queue.put("up")
    go.wait()
    started = time.perf_counter()
    for i in range(1, n + 1):
        queue.put({"kind": "progress", "engine": "e", "seq": i, "ts": time.time(), "phase": "", "done": i, "total": n})
    put_us.put(1e6 * (time.perf_counter() - started) / n)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def memory(pid: int) -> tuple[int, int]:
    """(RSS now, peak RSS) of a process, in bytes (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def cpu_seconds(pid: int) -> float:
    """A process's own CPU time so far, all its threads (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


TARGETS = {  # issue 18's
    "1_small_events_per_s": [("ours / zmq.proxy", lambda r: r["ours"] / r["zmq.proxy"], ">=", 1.0), ("ours / multiprocessing.Queue", lambda r: r["ours"] / r["multiprocessing.Queue"], ">=", 1.0)],
    "2_latency_us_at_1000_per_s": [("ours p50 / zmq.proxy p50", lambda r: r["ours p50"] / r["zmq.proxy p50"], "<=", 1.5), ("ours p99 (us)", lambda r: r["ours p99"], "<", 1000)],
    "3_screenshot_MB_per_s": [("ours / zmq.proxy", lambda r: r["ours"] / r["zmq.proxy"], ">=", 0.9)],
    "4_fifty_engines_five_subscribers": [("events lost", lambda r: r["lost"] + (0 if r["every_subscriber_complete"] else 1), "<=", 0)],
    "5_emit_us": [("ours (us per emit)", lambda r: r["ours"], "<=", 1.5)],
    "6_supervisor_rss_after_1M_events_one_stalled_subscriber": [("peak RSS (MiB)", lambda r: r["peak_MiB"], "<", 100)],
    "7_stop_100_engines_s": [("seconds", lambda r: r["seconds"], "<", 3)],
    "8_chatty_child_100k_lines": [
        ("under bus up -q / into cat", lambda r: r["under bus up -q s"] / r["piped into cat s"], "<=", 1.5),
        ("display piped / into cat", lambda r: r["under bus up, display piped s"] / r["piped into cat s"], "<=", 1.5),
        ("lines lost (journal, display, tail)", lambda r: 3 * r["lines"] - r["journaled"] - r["shown"] - r["bus tail printed"], "<=", 0),
        ("bus tail's last line after the child (s)", lambda r: r["bus tail piped: last line after the child's end s"], "<=", 1.0),
    ],
    "10_bus_run_true_s": [("bus run -q -- true / bus --version", lambda r: r["bus run -q -- true"] / r["bus --version"], "<=", 2.0)],
    "13_work_queue_jobs_per_s": [  # issue 20's
        ("no-op x2: ours / multiprocessing", lambda r: r["no-op, 2 workers: ours / multiprocessing"], ">=", 0.5),
        ("no-op x8: ours / multiprocessing", lambda r: r["no-op, 8 workers: ours / multiprocessing"], ">=", 0.5),
        ("1 ms x2: ours / multiprocessing", lambda r: r["1 ms, 2 workers: ours / multiprocessing"], ">=", 0.9),
        ("1 ms x8: ours / multiprocessing", lambda r: r["1 ms, 8 workers: ours / multiprocessing"], ">=", 0.9),
    ],
    "13_work_queue_submit_to_start_ms": [("ours p50 (ms)", lambda r: r["ours p50"], "<", 1.0)],
    "11_start_trivial_engines": [("per-engine cost, large / small", lambda r: next(v for k, v in r.items() if k.startswith("per engine")), "<=", 1.5)],
}


def report(results: dict[str, Any]) -> list[str]:
    lines = []
    for figure, values in results.items():
        if figure.startswith("_"):
            continue
        lines.append(figure)
        for name, value in values.items():
            lines.append(f"    {name:<40} {_fmt(value)}")
        for label, compute, op, bound in TARGETS.get(figure, []):
            got = compute(values)
            met = got >= bound if op == ">=" else got <= bound if op == "<=" else got < bound
            lines.append(f"  target {label:<33} {_fmt(got)} {op} {bound}: {'met' if met else 'NOT MET'}")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3f}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor(),
        "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(), "bus": __version__, "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a twentieth of the events: a smoke run, figures not comparable")
    parser.add_argument("--only", metavar="NAME", action="append", help="run only this figure: throughput, latency, screenshots, many, memory, stop, lines, startup, scale, spawn, queues")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"), help="where to write the JSON (default: bench/results.json)")
    args = parser.parse_args()
    bench = Bench(args.quick)
    started = time.perf_counter()
    steps = {"throughput": bench.throughput, "latency": bench.latency, "screenshots": bench.screenshots, "many": bench.many, "memory": bench.memory, "stop": bench.stop_many,
             "lines": bench.lines, "startup": bench.startup, "scale": bench.scale, "spawn": bench.spawn, "queues": bench.queues}
    try:
        for name, step in steps.items():
            if args.only and name not in args.only:
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            step()
    finally:
        bench.close()
    results = {"_machine": machine(), "_seconds": time.perf_counter() - started, "_quick": args.quick, **bench.results}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(report(bench.results)))
    print(f"({results['_seconds']:.0f} s; {results['_machine']['cpus']} CPUs, {results['_machine']['cpu']}; written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
