"""Pure moving-window throttling for authentication attempts (ASVS 6.3.1, 4.0.3 2.2.1).

Give it the timestamps of recent *failures* for one key (an account, an address, ...) and
it says whether another attempt may be made now. Up to ``FREE_FAILURES`` failures within
``BACKOFF_WINDOW_SECONDS`` cost nothing; each further one doubles the wait after the last
failure (``2**(n - FREE_FAILURES)`` s, capped at ``MAX_BACKOFF_SECONDS``). ``LOCK_THRESHOLD``
failures within ``LOCK_WINDOW_SECONDS`` lock the key until the hour has passed or an
administrator lifts it (pass ``reset_at``: failures at or before it are ignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

FREE_FAILURES = 5
BACKOFF_WINDOW_SECONDS = 15 * 60
BACKOFF_BASE = 2
MAX_BACKOFF_SECONDS = 15 * 60
LOCK_THRESHOLD = 100
LOCK_WINDOW_SECONDS = 60 * 60


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int = FREE_FAILURES
    backoff_window_seconds: float = BACKOFF_WINDOW_SECONDS
    backoff_base: int = BACKOFF_BASE
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS
    lock_threshold: int = LOCK_THRESHOLD
    lock_window_seconds: float = LOCK_WINDOW_SECONDS

    @property
    def retention_seconds(self) -> float:
        """How long failure timestamps must be kept for this policy."""
        return max(self.backoff_window_seconds, self.lock_window_seconds)


DEFAULT_POLICY = ThrottlePolicy()


@dataclass(frozen=True, slots=True)
class ThrottleDecision:
    allowed: bool
    retry_after: int  # whole seconds; 0 when allowed (use as the Retry-After header)
    locked: bool


def backoff_seconds(failures_in_window: int, policy: ThrottlePolicy = DEFAULT_POLICY) -> float:
    """The wait required after the last failure when ``failures_in_window`` failures are recent."""
    excess = failures_in_window - policy.free_failures
    if excess < 0:
        return 0.0
    if excess >= 64:
        return float(policy.max_backoff_seconds)
    return float(min(policy.backoff_base**excess, policy.max_backoff_seconds))


def decide(
    failures: Iterable[float],
    *,
    now: float,
    policy: ThrottlePolicy = DEFAULT_POLICY,
    reset_at: float | None = None,
) -> ThrottleDecision:
    """Whether an attempt is allowed at ``now`` given the failure timestamps for one key."""
    recent = sorted(
        min(t, now)  # a timestamp from the future counts as now
        for t in failures
        if now - t < policy.retention_seconds and (reset_at is None or t > reset_at)
    )
    in_lock_window = [t for t in recent if now - t < policy.lock_window_seconds]
    if len(in_lock_window) >= policy.lock_threshold:
        # Locked until enough failures age out to bring the count below the threshold.
        release_at = in_lock_window[len(in_lock_window) - policy.lock_threshold]
        wait = release_at + policy.lock_window_seconds - now
        return ThrottleDecision(allowed=False, retry_after=max(1, math.ceil(wait)), locked=True)

    in_backoff_window = [t for t in recent if now - t < policy.backoff_window_seconds]
    delay = backoff_seconds(len(in_backoff_window), policy)
    if delay > 0:
        wait = in_backoff_window[-1] + delay - now
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            return ThrottleDecision(allowed=False, retry_after=retry_after, locked=False)
    return ThrottleDecision(allowed=True, retry_after=0, locked=False)
