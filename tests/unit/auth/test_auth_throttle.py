from __future__ import annotations

import itertools

from labelvault.auth.throttle import (
    BACKOFF_WINDOW_SECONDS,
    FREE_FAILURES,
    LOCK_THRESHOLD,
    LOCK_WINDOW_SECONDS,
    MAX_BACKOFF_SECONDS,
    ThrottleDecision,
    decide,
)

NOW = 1_000_000.0


def test_free_failures_allowed() -> None:
    failures = [NOW - 10 * i for i in range(FREE_FAILURES - 1)]
    assert decide(failures, now=NOW) == ThrottleDecision(allowed=True, retry_after=0, locked=False)
    assert decide([], now=NOW).allowed


def test_backoff_grows_exponentially_and_is_capped() -> None:
    waits = []
    for n in range(FREE_FAILURES, FREE_FAILURES + 12):
        failures = [NOW - 0.001 * i for i in range(n)]
        decision = decide(failures, now=NOW)
        assert not decision.allowed and not decision.locked
        waits.append(decision.retry_after)
    assert waits[:5] == [1, 2, 4, 8, 16]
    assert all(b >= a for a, b in itertools.pairwise(waits))
    assert max(waits) == MAX_BACKOFF_SECONDS


def test_backoff_measured_from_last_failure() -> None:
    failures = [NOW - 100 - i for i in range(FREE_FAILURES + 3)]  # wait 8 s, 100 s ago
    assert decide(failures, now=NOW).allowed
    failures.append(NOW - 3)  # now 9 failures -> 16 s after the last
    decision = decide(failures, now=NOW)
    assert decision == ThrottleDecision(allowed=False, retry_after=13, locked=False)


def test_window_expiry() -> None:
    old = [NOW - BACKOFF_WINDOW_SECONDS - 1 - i for i in range(20)]
    assert decide(old, now=NOW).allowed
    assert decide(old, now=old[0] + 1).allowed is False


def test_lock_at_100_per_hour() -> None:
    # 100 failures spread over the last hour, the oldest 3000 s ago.
    failures = [NOW - 3000 + 30 * i for i in range(LOCK_THRESHOLD)]
    decision = decide(failures, now=NOW)
    assert decision.locked and not decision.allowed
    assert decision.retry_after == LOCK_WINDOW_SECONDS - 3000
    # 99 failures: not locked (just back-off).
    assert not decide(failures[1:], now=NOW).locked
    # Once the oldest ages out of the hour, the lock is lifted.
    later = NOW + (LOCK_WINDOW_SECONDS - 3000)
    assert not decide(failures, now=later).locked


def test_admin_reset_lifts_lock() -> None:
    failures = [NOW - i for i in range(LOCK_THRESHOLD)]
    assert decide(failures, now=NOW).locked
    assert decide(failures, now=NOW, reset_at=NOW) == ThrottleDecision(True, 0, False)


def test_future_timestamps_count_as_now() -> None:
    failures = [NOW + 500] * (FREE_FAILURES + 1)
    decision = decide(failures, now=NOW)
    assert not decision.allowed and decision.retry_after == 2
