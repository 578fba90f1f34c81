"""The tests' own set-up: a database pool opening a connection in a server thread must not
move the global random state under a hypothesis strategy drawing in the main thread."""

from __future__ import annotations

import random

from psycopg_pool.base import BasePool


def test_pool_jitter_leaves_the_global_random_state_alone() -> None:
    state = random.getstate()
    for _ in range(10):
        BasePool._jitter(60.0, -0.05, 0.0)
    assert random.getstate() == state
