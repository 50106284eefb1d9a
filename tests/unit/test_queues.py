"""supervisor/queues.py: FIFO per queue, work only on request, at least once, dead after the budget."""

from __future__ import annotations

import random

import pytest

from bus.supervisor.queues import DEAD, DONE, Changed, Give, Job, Queues, QueueFull, QueueSpec


def make(**spec: int) -> Queues:
    return Queues({"q": QueueSpec(**spec), "other": QueueSpec()}, clock=iter(range(10**9)).__next__)


def given(outputs: list) -> list[tuple[str, str]]:
    return [(o.instance, o.job.id) for o in outputs if isinstance(o, Give)]


def test_fifo_and_nothing_goes_to_an_instance_that_did_not_ask() -> None:
    qs = make()
    for n in range(3):
        _, out = qs.submit("q", {"n": n}, job_id=f"j{n}")
        assert given(out) == []
    assert given(qs.ask("a", "q")) == [("a", "j0")]  # one credit: one job
    assert given(qs.ask("b", "q", 2)) == [("b", "j1"), ("b", "j2")]
    _, out = qs.submit("q", None, job_id="j3")
    assert given(out) == []  # every credit is used
    out = qs.done("a", "j0", {"ok": 1})
    assert [(c.job.id, c.what) for c in out if isinstance(c, Changed)] == [("j0", "done")] and given(out) == []
    assert given(qs.ask("a", "q")) == [("a", "j3")]
    assert qs.counts("q") == {"queued": 0, "running": 3, "done": 1, "failed": 0, "dead": 0}
    assert qs.counts("other")["queued"] == 0


def test_a_gone_instance_puts_its_jobs_back_first_in_line_with_the_next_attempt() -> None:
    qs = make()
    for n in range(4):
        qs.submit("q", n, job_id=f"j{n}")
    qs.ask("a", "q", 2)
    out = qs.gone("a", "killed by SIGKILL")
    assert [(c.job.id, c.what, c.cause) for c in out if isinstance(c, Changed)] == [("j1", "retried", "killed by SIGKILL"), ("j0", "retried", "killed by SIGKILL")]
    assert given(qs.ask("b", "q", 4)) == [("b", "j0"), ("b", "j1"), ("b", "j2"), ("b", "j3")]
    assert [qs.jobs[f"j{n}"].attempt for n in range(4)] == [2, 2, 1, 1]
    assert given(qs.ask("a", "q")) == []  # (its old credit died with it)


def test_failures_spend_the_budget_then_dead_kept_and_retried_by_hand() -> None:
    qs = make(max_attempts=2)
    qs.submit("q", None, job_id="bad")
    qs.ask("a", "q")
    out = qs.failed("a", "bad", "ValueError: no")
    assert [c.what for c in out if isinstance(c, Changed)] == ["failed"] and given(out) == []  # (a has no credit left)
    assert qs.jobs["bad"].attempt == 1 and qs.counts("q")["queued"] == 1
    qs.ask("a", "q")
    out = qs.failed("a", "bad", "ValueError: no")
    assert [c.what for c in out if isinstance(c, Changed)] == ["dead"]
    assert qs.jobs["bad"].state == DEAD and qs.counts("q")["dead"] == 1
    assert given(qs.ask("b", "q")) == []
    out = qs.retry("bad")
    assert given(out) == [("b", "bad")] and qs.jobs["bad"].attempt == 1 and qs.counts("q")["dead"] == 0
    with pytest.raises(LookupError):
        qs.retry("bad")
    out = qs.failed("b", "bad", "fatal", retry=False)
    assert [c.what for c in out if isinstance(c, Changed)] == ["dead"]


def test_refusals_say_what_and_change_nothing() -> None:
    qs = make(max_queued=2)
    qs.submit("q", 1)
    qs.submit("q", 2)
    with pytest.raises(QueueFull, match="max_queued"):
        qs.submit("q", 3)
    with pytest.raises(LookupError, match="no queue 'nope'"):
        qs.submit("nope", 1)
    with pytest.raises(LookupError, match="not running on"):
        qs.done("a", "j1")
    qs.ask("a", "q")
    with pytest.raises(LookupError):
        qs.done("b", "j1")  # it runs on a, not b
    assert qs.counts("q") == {"queued": 1, "running": 1, "done": 0, "failed": 0, "dead": 0}


def test_a_drain_gives_out_nothing_more_but_lets_running_jobs_finish() -> None:
    qs = make()
    for n in range(3):
        qs.submit("q", n, job_id=f"j{n}")
    qs.ask("a", "q")
    qs.drain()
    assert given(qs.ask("b", "q", 5)) == []
    assert [c.what for c in qs.done("a", "j0") if isinstance(c, Changed)] == ["done"]
    assert qs.counts("q")["queued"] == 2


def test_restored_jobs_resume_and_the_running_ones_start_their_next_attempt() -> None:
    old = [Job("j1", "q", 1, state=DONE, attempt=1), Job("j2", "q", 2, state="running", attempt=1, instance="a"), Job("j3", "q", 3)]
    qs = make()
    qs.restore(old)
    assert given(qs.ask("b", "q", 5)) == [("b", "j2"), ("b", "j3")]
    assert qs.jobs["j2"].attempt == 2 and qs.jobs["j3"].attempt == 1


def test_under_random_kills_every_job_ends_done_and_only_lost_ones_ran_twice() -> None:
    rng = random.Random(7)
    qs = make(max_attempts=10)
    for n in range(2000):
        qs.submit("q", n, job_id=f"j{n}")
    instances = [f"w.{k}" for k in range(10)]
    holding: dict[str, list[str]] = {i: [] for i in instances}
    lost: set[str] = set()
    starts: dict[str, int] = {}

    def take(out: list) -> None:
        for instance, job_id in given(out):
            holding[instance].append(job_id)
            starts[job_id] = starts.get(job_id, 0) + 1

    for i in instances:
        take(qs.ask(i, "q"))
    while any(holding.values()):
        i = rng.choice([i for i in instances if holding[i]])
        if rng.random() < 0.01:
            lost.update(holding[i])
            holding[i] = []
            take(qs.gone(i))
        else:
            take(qs.done(i, holding[i].pop(0)))
        take(qs.ask(i, "q"))
    assert qs.counts("q") == {"queued": 0, "running": 0, "done": 2000, "failed": 0, "dead": 0}
    assert all(j.state == DONE for j in qs.jobs.values())
    assert {j for j, n in starts.items() if n > 1} <= lost and lost


def test_each_change_says_the_attempt_and_instance_it_was_made_at() -> None:
    # Seen in the integration test: a job that failed on `a` while `b` waited for work was
    # started on `b` at once, and its job.failed (built after) said attempt 2 and instance b.
    qs = make(max_attempts=3)
    qs.submit("q", {}, job_id="j0")
    qs.ask("a", "q")
    qs.ask("b", "q")
    out = qs.failed("a", "j0", "boom")
    changes = [(c.what, c.attempt, c.instance) for c in out if isinstance(c, Changed)]
    assert changes == [("failed", 1, "a"), ("started", 2, "b")]
    out = qs.gone("b", "killed")
    assert [(c.what, c.attempt, c.instance) for c in out if isinstance(c, Changed)] == [("retried", 2, "b")]


def test_a_release_puts_unstarted_jobs_back_first_without_counting_an_attempt() -> None:
    qs = make()
    for n in range(4):
        qs.submit("q", n, job_id=f"j{n}")
    qs.ask("a", "q", 3)  # j0, j1, j2
    out = qs.release("a", ["j1", "j2", "nope"], "handed back unstarted")
    assert [(c.job.id, c.what, c.attempt, c.instance) for c in out if isinstance(c, Changed)] == [("j2", "retried", 1, "a"), ("j1", "retried", 1, "a")]
    assert [j.id for j in qs.running_on("a")] == ["j0"]
    assert given(qs.ask("b", "q", 3)) == [("b", "j1"), ("b", "j2"), ("b", "j3")]  # in their order, before the rest
    assert [qs.jobs[f"j{n}"].attempt for n in range(4)] == [1, 1, 1, 1]
    assert qs.release("a", ["j1"], "again") == []  # (it runs on b now: nothing to give back)
