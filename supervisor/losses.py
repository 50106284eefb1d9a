"""What an engine sent that never arrived, and what it dropped: counted, recovered, said.

How it works: an engine's `bye` says how many events it sent and dropped; its
crash spool (bus/spool.py) holds the events it sent and their drops by kind,
also after a SIGKILL. When an engine ends, what the spool holds beyond the last
event received is published in order (`accept`), what neither arrived nor is
in the spool is counted as lost, and drops are said by kind (`note`). Nothing
here opens a socket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from bus.protocol import DROPPABLE_KINDS, Event, RemoteProtocolError, decode
from bus.spool import SpoolAcks, read_spool
from bus.view import most_counts

from .children import Child

Note = Callable[[Child, str, str], None]       # (child, level, message)
Accept = Callable[[Child, Event], None]


def check_bye(child: Child, bye: Event, note: Note) -> None:
    """Make losses visible: what the engine says it sent against what came."""
    lost = bye.sent - (child.run_events - 1)  # type: ignore[attr-defined]  # run_events counts the bye
    if lost > 0:
        child.lost += lost
        note(child, "error", f"{lost} event(s) this engine sent never arrived")
    child.dropped_now = most_counts(child.dropped_now, drops_of(bye))  # its final count
    tell_drops(child, note)


def tell_drops(child: Child, note: Note) -> None:
    """Say, by kind, what the engine dropped and has not been said yet."""
    drops = child.dropped_now
    total = sum(drops.values())
    if total <= child.told_drops:
        return
    child.told_drops = total
    known = sorted(((kind, n) for kind, n in drops.items() if kind != "unknown"), key=lambda kv: -kv[1])
    said = ", ".join(f"{n} {kind}" for kind, n in known)
    if "unknown" in drops:
        said += (", and " if said else "") + f"{drops['unknown']} of kinds it did not say"
    allowed = set(child.spec.droppable) if child.spec.droppable is not None else set(DROPPABLE_KINDS)
    waited = [kind for kind, _ in known if kind not in allowed]
    why = f"; {', '.join(waited)} may not be dropped for it: those waited BUS_SEND_TIMEOUT for room first" if waited and not child.remote else ""
    note(child, "warning", f"the engine dropped {total} event(s) because the bus did not keep up: {said}{why}")


def drops_of(event: Event) -> dict[str, int]:
    """What a heartbeat or bye says was dropped, by kind ("unknown" for an SDK that gives only the total)."""
    kinds: dict[str, int] = event.dropped_kinds  # type: ignore[attr-defined]
    total: int = event.dropped  # type: ignore[attr-defined]
    if sum(kinds.values()) < total:
        kinds = {**kinds, "unknown": total - sum(kinds.values())}
    return kinds


def map_acks(path: Path, received: int) -> SpoolAcks | None:
    """Map an engine's spool header to tell it what we received (None: no spool there, or another kind)."""
    try:
        acks = SpoolAcks(path)
    except (OSError, ValueError):
        return None
    acks.ack(received)
    return acks


def recover_spool(child: Child, accept: Accept, note: Note) -> int:
    """Publish what a dead engine sent but the bus never received, and take its last drop
    counts; then drop the spool. Returns how many events were recovered."""
    path, child.spool = child.spool, None
    if child.acks is not None:
        child.dropped_now = most_counts(child.dropped_now, child.acks.drops())  # its last drops too, told or not
        child.acks.close()
        child.acks = None
        if not child.bye:
            tell_drops(child, note)
    if path is None or not path.exists():
        return 0
    try:
        records = {} if child.bye else read_spool(path, after=child.max_seq)
    finally:
        path.unlink(missing_ok=True)
    start = child.max_seq + 1
    missing = sorted(seq for seq in records if seq >= start)
    recovered, gone = 0, [seq for seq in range(start, missing[-1] + 1) if seq not in records] if missing else []
    for seq in missing:
        event = _decode_record(child, seq, records[seq])
        if event is None:
            gone.append(seq)
            continue
        accept(child, event)
        recovered += 1
    child.recovered += recovered
    if gone:
        child.lost += len(gone)
        note(child, "error", f"{len(gone)} event(s) the engine sent are lost (not in its crash spool): seq {_ranges(sorted(gone))}")
    return recovered


def _decode_record(child: Child, seq: int, frames: list[bytes] | None) -> Event | None:
    if frames is None:
        return None
    try:
        event = decode(frames, from_engine=True)
    except RemoteProtocolError:
        return None
    return event if isinstance(event, Event) and event.engine == child.name and event.seq == seq else None


def _ranges(numbers: Iterable[int]) -> str:
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)
