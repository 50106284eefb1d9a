from __future__ import annotations

from bus.supervisor.history import Entry, History


def fill(history: History, count: int, size: int = 10) -> None:
    for gseq in range(1, count + 1):
        kind = "screenshot" if gseq % 5 == 0 else "log"
        history.append(Entry(gseq, kind, f"e{gseq % 2}", 1000.0 + gseq, [b"h"], size))


def gseqs(entries: list[Entry]) -> list[int]:
    return [e.gseq for e in entries]


def test_bounded_by_count_and_bytes() -> None:
    history = History(max_events=5, max_bytes=10_000)
    fill(history, 12)
    assert (len(history), history.first, history.evicted) == (5, 8, 7)
    by_bytes = History(max_events=100, max_bytes=35)
    fill(by_bytes, 10)
    assert (len(by_bytes), by_bytes.first, by_bytes.bytes) == (3, 8, 30)


def test_one_oversized_entry_is_still_kept() -> None:
    history = History(max_events=10, max_bytes=5)
    history.append(Entry(1, "screenshot", "e", 0.0, [b"x"], 1000))
    assert len(history) == 1


def test_select_ranges_filters_and_last() -> None:
    history = History(max_events=100, max_bytes=10**6)
    fill(history, 20)
    assert gseqs(history.select(after=15)[0]) == [16, 17, 18, 19, 20]
    assert gseqs(history.select(after=3, until=6)[0]) == [4, 5, 6]
    assert gseqs(history.select(kinds=["screenshot"])[0]) == [5, 10, 15, 20]
    assert gseqs(history.select(engines=["e1"], until=6)[0]) == [1, 3, 5]
    assert gseqs(history.select(last=3)[0]) == [18, 19, 20]
    assert gseqs(history.select(last=2, kinds=["screenshot"], until=14)[0]) == [5, 10]
    assert history.select(after=20) == ([], False)
    assert gseqs(history.select(since=1017.0)[0]) == [17, 18, 19, 20]


def test_select_pages_by_count_and_bytes() -> None:
    history = History(max_events=100, max_bytes=10**6)
    fill(history, 20)
    page, more = history.select(limit=7)
    assert (gseqs(page), more) == ([1, 2, 3, 4, 5, 6, 7], True)
    page, more = history.select(after=7, max_bytes=25)
    assert (gseqs(page), more) == ([8, 9], True)
    page, more = history.select(after=18, limit=7)
    assert (gseqs(page), more) == ([19, 20], False)


def test_select_after_eviction_starts_at_the_oldest_held() -> None:
    history = History(max_events=5, max_bytes=10**6)
    fill(history, 12)
    assert gseqs(history.select(after=0)[0]) == [8, 9, 10, 11, 12]
