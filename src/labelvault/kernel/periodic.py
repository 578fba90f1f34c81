"""Work repeated at an interval until a stop event: the servers' background loops."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

_jitter = random.Random()  # noqa: S311 - spreads servers out; not security, not global state


def jitter(low: float, high: float) -> float:
    """A delay in ``[low, high]`` so that servers started together do not work in step (drawn
    from a private generator: the global one is left alone)."""
    return _jitter.uniform(low, high)


async def every(
    interval: float,
    stop_event: asyncio.Event,
    work: Callable[[], Awaitable[object]],
    *,
    first: float,
    on_error: Callable[[Exception], None],
) -> None:
    """Run ``work`` ``first`` seconds from now, then every ``interval`` seconds, until
    ``stop_event`` is set (waiting ends at once when it is). A failed run goes to
    ``on_error`` and the next one comes as usual."""
    delay = first
    while not stop_event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=delay)
        if stop_event.is_set():
            break
        try:
            await work()
        except Exception as exc:  # e.g. the database away for a moment: next time
            on_error(exc)
        delay = interval
