from __future__ import annotations

import random


from bus.supervisor.config import RestartPolicy
from bus.supervisor.lifecycle import Trigger
from bus.supervisor.restart import RestartTracker


def tracker(**policy: object) -> RestartTracker:
    return RestartTracker(RestartPolicy(**{"mode": "on-failure", "jitter": 0.0, **policy}), random.Random(7))


def test_policy_decides_whether_an_exit_restarts() -> None:
    assert tracker(mode="never").decide(failed=True, uptime=1, now=0).trigger is Trigger.EXIT
    assert tracker(mode="on-failure").decide(failed=False, uptime=1, now=0).trigger is Trigger.EXIT
    assert tracker(mode="on-failure").decide(failed=True, uptime=1, now=0).trigger is Trigger.RETRY
    assert tracker(mode="always").decide(failed=False, uptime=1, now=0).trigger is Trigger.RETRY


def test_delays_double_up_to_the_cap() -> None:
    t = tracker(backoff=0.5, backoff_max=3.0, max_restarts=100)
    delays = [t.decide(failed=True, uptime=0.1, now=i).delay for i in range(6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_stays_within_its_bounds_and_keeps_growth() -> None:
    t = RestartTracker(RestartPolicy(mode="always", backoff=1.0, backoff_max=1000, jitter=0.25, max_restarts=100), random.Random(1))
    delays = [t.decide(failed=True, uptime=0, now=i).delay for i in range(8)]
    for n, delay in enumerate(delays):
        assert 0.75 * 2**n <= delay <= 1.25 * 2**n
    assert delays == sorted(delays)  # doubling beats +-25% jitter
    assert len(set(delays)) == len(delays)


def test_a_stable_run_resets_the_delay() -> None:
    t = tracker(backoff=1.0, stable_after=10, max_restarts=100)
    assert [t.decide(failed=True, uptime=1, now=i).delay for i in range(3)] == [1.0, 2.0, 4.0]
    assert t.decide(failed=True, uptime=10, now=100).delay == 1.0


def test_the_budget_ends_in_give_up_and_frees_up_after_the_window() -> None:
    t = tracker(max_restarts=3, window=60)
    triggers = [t.decide(failed=True, uptime=0, now=float(i)).trigger for i in range(5)]
    assert triggers == [Trigger.RETRY] * 3 + [Trigger.GIVE_UP] * 2
    assert "3 restart(s) within 60s (max_restarts = 3)" in t.decide(failed=True, uptime=0, now=5).reason
    assert t.decide(failed=True, uptime=0, now=61).trigger is Trigger.RETRY  # the first two fell out


def test_reset_gives_a_fresh_budget() -> None:
    t = tracker(max_restarts=1)
    assert t.decide(failed=True, uptime=0, now=0).trigger is Trigger.RETRY
    assert t.decide(failed=True, uptime=0, now=1).trigger is Trigger.GIVE_UP
    t.reset()
    decision = t.decide(failed=True, uptime=0, now=2)
    assert decision.trigger is Trigger.RETRY and decision.delay == 0.5
    assert t.total == 2


def test_zero_budget_never_restarts() -> None:
    assert tracker(max_restarts=0).decide(failed=True, uptime=0, now=0).trigger is Trigger.GIVE_UP


def test_forced_restarts_ignore_the_mode_but_not_the_budget() -> None:
    t = tracker(mode="never", max_restarts=1)
    assert t.decide(failed=True, uptime=0, now=0, forced=True).trigger is Trigger.RETRY
    assert t.decide(failed=True, uptime=0, now=1, forced=True).trigger is Trigger.GIVE_UP
