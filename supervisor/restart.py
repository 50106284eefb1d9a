"""Restart decisions: policy, exponential backoff with jitter, and a budget (pure).

How it works: each engine instance has a `RestartTracker`. When it exits, the
supervisor asks `decide(failed, uptime, now)`:

- the policy says whether this exit restarts at all (never; on-failure: only a
  non-zero code or a signal; always);
- a run of at least `stable_after` seconds resets the delay to `backoff`;
- the delay doubles with each restart up to `backoff_max`, times 1 +- jitter;
- if `max_restarts` restarts already happened within the last `window`
  seconds, the answer is GIVE_UP: the engine is FATAL, no restart storm.

The clock is the caller's `now` and the randomness an injected `random.Random`,
so every decision is reproducible in tests.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from .config import RestartPolicy
from .lifecycle import Trigger


@dataclass(frozen=True, slots=True)
class Decision:
    trigger: Trigger          # RETRY, EXIT or GIVE_UP
    delay: float = 0.0        # seconds until the restart (RETRY only)
    reason: str = ""


class RestartTracker:
    def __init__(self, policy: RestartPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.attempt = 0                      # restarts since the last stable run
        self.recent: deque[float] = deque()   # times of restarts within the window
        self.total = 0                        # restarts ever (for status)

    def decide(self, *, failed: bool, uptime: float, now: float, forced: bool = False) -> Decision:
        """`forced`: restart whatever the policy (an unresponsive engine with
        on_unresponsive = "restart"); the backoff and the budget still apply."""
        policy = self.policy
        if not forced and (policy.mode == "never" or (policy.mode == "on-failure" and not failed)):
            return Decision(Trigger.EXIT, reason=f"restart = {policy.mode}")
        if uptime >= policy.stable_after:
            self.attempt = 0
        while self.recent and self.recent[0] <= now - policy.window:
            self.recent.popleft()
        if len(self.recent) >= policy.max_restarts:
            return Decision(
                Trigger.GIVE_UP,
                reason=f"{len(self.recent)} restart(s) within {policy.window:g}s (max_restarts = {policy.max_restarts})",
            )
        self.attempt += 1
        self.total += 1
        self.recent.append(now)
        base = min(policy.backoff_max, policy.backoff * 2.0 ** min(self.attempt - 1, 64))  # (2**1100 would not fit a float)
        delay = base * (1 + policy.jitter * self.rng.uniform(-1.0, 1.0))
        return Decision(Trigger.RETRY, delay=delay, reason=f"restart {self.total} in {delay:.2f}s")

    def reset(self) -> None:
        """A manual start or restart: a fresh budget and the first delay again."""
        self.attempt = 0
        self.recent.clear()
