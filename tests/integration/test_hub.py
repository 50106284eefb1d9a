"""The hub: several supervisors, over TCP with CURVE keys, seen as one stream.

Processes stand in for hosts: two supervisors (sessions a and b) listen on
127.0.0.1 with keys, and a hub follows both with a subscriber key, knowing
nothing of them but their TCP addresses and public key.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections import Counter
from pathlib import Path

from helpers import Watcher, bus, bus_result, finish, scripted, write_config

from bus import Subscriber
from bus.journal import JournalReader
from bus.protocol import AnyEvent, decode
from bus.runtime import journal_path, local_session


def free_base_port() -> int:
    """A port P with P, P+1 and P+2 free now (a supervisor binds all three)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        try:
            held = []
            for port in (base, base + 1, base + 2):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no three consecutive free ports")


def journaled(session: str) -> dict[str, list[AnyEvent]]:
    """Every event a session's journal holds, per run, in gseq order."""
    reader = JournalReader(journal_path(local_session(session)))
    try:
        out: dict[str, list[AnyEvent]] = {}
        for info in reader.runs():
            events, after = out.setdefault(info.run, []), 0
            while True:
                entries, reply = reader.page(info.run, after=after)
                events += [decode(entry.frames) for entry in entries]
                if not reply["more"]:
                    break
                after = reply["next"]
        return out
    finally:
        reader.close()


def keyed(hub_events: list[AnyEvent], origin: str) -> dict[tuple[str, int], AnyEvent]:
    """The hub's events from one origin by (its run, its gseq); fails on a duplicate."""
    run, out = None, {}
    for event in hub_events:
        if event.origin != origin:
            continue
        if event.kind == "upstream" and event.fields()["state"] == "started":
            run = event.fields()["run"]
        if event.origin_gseq is None:
            continue  # the hub's own word (following, lost): not one of the supervisor's events
        assert run is not None, f"{origin}: {event.kind} came before its run's start"
        key = (run, event.origin_gseq)
        assert key not in out, f"{origin}: event {key} relayed twice"
        out[key] = event
    return out


def same_event(relayed: AnyEvent, original: AnyEvent) -> bool:
    if original.kind in ("sup.start", "sup.stop"):
        return relayed.kind == "upstream" and relayed.fields()["state"] == {"sup.start": "started", "sup.stop": "stopped"}[original.kind]
    return (relayed.kind, relayed.engine, relayed.seq, relayed.ts, relayed.fields()) == (original.kind, original.engine, original.seq, original.ts, original.fields())


def test_a_hub_relays_two_supervisors_labelled_and_refills_one_that_was_killed_and_restarted(runtime_dir: Path, tmp_path: Path, keys: dict[str, Path]) -> None:
    ports = {"a": free_base_port()}
    ports["b"] = free_base_port()
    while abs(ports["b"] - ports["a"]) < 3:
        ports["b"] = free_base_port()
    addresses = {name: f"tcp://127.0.0.1:{port}" for name, port in ports.items()}
    for name in ("a1", "a2", "b"):
        (tmp_path / name).mkdir()
    endless = write_config(tmp_path / "a1", {"work": scripted("--events", "1000000", "--seed", "1", "--pace", "10000")})  # about 100 events/s until killed
    finite = {name: write_config(tmp_path / name, {"work": scripted("--events", "300", "--seed", seed, "--shots", "3", "--pace", "1"), "other": scripted("--events", "50", "--seed", seed)})
              for name, seed in (("a2", "2"), ("b", "3"))}

    def supervisor(session: str, config: Path) -> object:
        return bus("up", "--session", session, "--quiet", "--listen", addresses[session], "--keys", str(keys["dir"]), str(config), stdout=open(tmp_path / f"{session}.out", "a"))

    hub = bus("hub", f"a={addresses['a']}", f"b={addresses['b']}", "--server-key", str(keys["server"]), "--key", str(keys["viewer"]), "--quiet", stdout=open(tmp_path / "hub.out", "w"))
    launched = []
    try:
        with Subscriber("hub", timeout=30, connect_timeout=60) as sub:
            watcher = Watcher(sub)
            watcher.wait(lambda e: e.kind == "sup.start")  # the hub's own run, following no one yet
            a1 = supervisor("a", endless)
            b = supervisor("b", finite["b"])
            launched += [a1, b]
            watcher.wait(lambda e: e.origin == "a" and e.kind == "progress" and e.fields()["done"] is not None and e.fields()["done"] >= 200, timeout=120)

            a1.send_signal(signal.SIGKILL)  # the supervisor, without a word; its watchdog takes its engine along
            a1.wait(30)
            lost = watcher.wait(lambda e: e.kind == "upstream" and e.origin == "a" and e.fields()["state"] == "lost", timeout=60)
            assert lost.fields()["address"] == addresses["a"]
            status = bus_result("status", "--json", "hub")
            assert status.returncode == 0, status.stderr
            upstreams = {u["origin"]: u for u in json.loads(status.stdout)["upstreams"]}
            assert upstreams["a"]["state"] == "lost"  # shown, not fatal: b goes on

            a2 = supervisor("a", finite["a2"])  # back, same session and journal, a new run
            launched.append(a2)
            for name in ("a", "b"):
                watcher.wait(lambda e, name=name: e.kind == "upstream" and e.origin == name and e.fields()["state"] == "stopped", timeout=120)
            assert finish(a2) == 0 and finish(b) == 0
            assert any(e.kind == "upstream" and e.origin == "a" and e.fields()["state"] == "following" for e in watcher.events[watcher.events.index(lost):])
            assert sub.lost == []
            hub_events = list(watcher.events)
        assert bus_result("down", "hub").returncode == 0
        assert finish(hub) == 0
    finally:
        for proc in [hub, *launched]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # Every event each supervisor journaled reached the hub's subscriber, once, labelled, as it was.
    for origin, session in (("a", "a"), ("b", "b")):
        relayed = keyed(hub_events, origin)
        runs = journaled(session)
        assert len(runs) == (2 if origin == "a" else 1)
        for run, events in runs.items():
            assert [e.gseq for e in events] == list(range(1, len(events) + 1))
            for event in events:
                assert (run, event.gseq) in relayed, f"{origin}: {event.kind} {run}/{event.gseq} never reached the hub's subscriber"
                assert same_event(relayed[(run, event.gseq)], event), (relayed[(run, event.gseq)], event)
        # Nothing from anywhere else: what the hub relayed and the journal lacks can only be
        # the killed run's last moments (published, not yet on disk when it was killed).
        extra = {key for key in relayed if key not in {(run, e.gseq) for run, events in runs.items() for e in events}}
        killed = [run for run, events in runs.items() if events[-1].kind != "sup.stop"]
        assert all(run in killed and gseq > len(runs[run]) for run, gseq in extra), extra
        assert len(killed) == (1 if origin == "a" else 0)

    # In each engine's own order, and each event labelled with where it came from.
    order: dict[tuple[str, str], list[int]] = {}
    for event in hub_events:
        if event.seq is not None:
            order.setdefault((event.origin, event.engine), []).append(event.seq)
    assert {origin for origin, _ in order} == {"a", "b"}
    for (origin, engine), seqs in order.items():
        runs_of = [list(group) for group in _runs_of(seqs)]
        assert all(r == list(range(1, len(r) + 1)) for r in runs_of), (origin, engine)
    assert Counter(e.origin for e in hub_events if e.kind == "upstream" and e.fields()["state"] == "started") == {"a": 2, "b": 1}
    assert os.path.exists(journal_path(local_session("hub")))  # the hub keeps its own history too


def _runs_of(seqs: list[int]) -> list[list[int]]:
    """Split one engine's seqs where a new process starts over at 1."""
    out: list[list[int]] = []
    for seq in seqs:
        if seq == 1 or not out:
            out.append([])
        out[-1].append(seq)
    return out
