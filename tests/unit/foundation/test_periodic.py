"""The servers' periodic loop: runs until stopped, survives a failed run, stops at once."""

from __future__ import annotations

import asyncio

from labelvault.kernel.periodic import every, jitter


async def test_runs_until_stopped_and_a_failed_run_does_not_end_it() -> None:
    stop = asyncio.Event()
    runs: list[int] = []
    errors: list[str] = []

    async def work() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise RuntimeError("the database is away for a moment")
        if len(runs) == 4:
            stop.set()

    await asyncio.wait_for(
        every(0, stop, work, first=0, on_error=lambda exc: errors.append(str(exc))), timeout=10
    )
    assert runs == [0, 1, 2, 3]
    assert errors == ["the database is away for a moment"]


async def test_a_stop_ends_the_wait_at_once_and_nothing_more_runs() -> None:
    stop = asyncio.Event()
    runs: list[int] = []

    async def work() -> None:
        runs.append(1)

    loop = asyncio.create_task(every(3600, stop, work, first=3600, on_error=print))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(loop, timeout=10)  # not an hour
    assert runs == []


def test_jitter_stays_in_its_range() -> None:
    assert all(30 <= jitter(30, 60) <= 60 for _ in range(1000))
