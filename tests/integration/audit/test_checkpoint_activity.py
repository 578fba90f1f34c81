"""The server's periodic checkpointer visits only the project chains written to since its last
visit: by this process (its own record), or by any other (PostgreSQL's write statistics, one
control-plane query). Idle projects' pools stay closed; a chain written to is visited and
signed again; unreadable statistics, a new statistics epoch or an hour mean every chain."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from audit_support import append_events, new_project

from labelvault.audit import checkpointer
from labelvault.audit.checkpointer import ChainActivity, checkpoint_all, project_chain_id
from labelvault.db.names import project_schema
from labelvault.platform import Platform

# a commit reaches the statistics within about ten seconds (a backend reports at most once a
# second, and after ten idle seconds what it held back)
SETTLE_S = 60.0
FLUSH_S = 11.0


class Visits:
    """``checkpoint_all`` over the control chain and the given projects' only (the test
    database holds other tests' projects), recording which chains it visited."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *projects: uuid.UUID) -> None:
        self.chains = ["control", *(project_chain_id(p) for p in projects)]
        self.seen: list[str] = []
        real = checkpointer.checkpoint_chain

        async def visited(platform: Platform, chain_id: str, *args: object, **kw: object) -> object:
            self.seen.append(chain_id)
            return await real(platform, chain_id, *args, **kw)  # type: ignore[arg-type]

        async def active(platform: Platform) -> list[str]:
            return list(self.chains)

        monkeypatch.setattr(checkpointer, "checkpoint_chain", visited)
        monkeypatch.setattr(checkpointer, "active_chains", active)

    async def run(
        self, platform: Platform, activity: ChainActivity, *, as_another_process: bool = True
    ) -> set[str]:
        if as_another_process:  # this process's own record of its writes is left out
            platform.db.take_written_projects()
        self.seen.clear()
        await checkpoint_all(platform, activity=activity)
        return set(self.seen)


async def _settled(platform: Platform, visits: Visits, activity: ChainActivity) -> None:
    """Runs until the statistics of everything so far (the visits' own sealing included) have
    arrived and no project chain is visited, twice, a flush interval apart."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    projects = set(visits.chains) - {"control"}
    while True:
        seen = await visits.run(platform, activity)
        if not seen & projects:
            await asyncio.sleep(FLUSH_S)
            seen = await visits.run(platform, activity)
            if not seen & projects:
                return
        assert loop.time() < deadline, f"still visiting {seen & projects}"
        await asyncio.sleep(1)


async def test_idle_chains_are_skipped_written_ones_visited(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy, idle = await new_project(platform), await new_project(platform)
    await append_events(platform, busy, 2)
    await append_events(platform, idle, 2)
    visits = Visits(monkeypatch, busy, idle)
    activity = ChainActivity()
    assert await visits.run(platform, activity) == set(visits.chains)  # the first: every chain
    await _settled(platform, visits, activity)
    assert "control" in await visits.run(platform, activity)  # always visited

    # written by "another process": only the statistics tell, within seconds
    await append_events(platform, busy, 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while project_chain_id(busy) not in (seen := await visits.run(platform, activity)):
        assert loop.time() < deadline, "the written chain was never visited"
        await asyncio.sleep(1)
    assert project_chain_id(idle) not in seen
    # signed at its new size by that visit: the command, visiting every chain, has nothing new
    signed = {r.chain_id for r in await checkpointer.checkpoint_all(platform)}
    assert project_chain_id(busy) not in signed

    # written by this process: visited at once, whatever the statistics say yet
    await _settled(platform, visits, activity)
    await append_events(platform, idle, 1)
    seen = await visits.run(platform, activity, as_another_process=False)
    assert project_chain_id(idle) in seen and project_chain_id(busy) not in seen


async def test_every_chain_when_the_statistics_say_nothing(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = await new_project(platform)
    chain, schema = project_chain_id(pid), project_schema(pid)
    activity = ChainActivity()
    assert await activity.counters(platform) is not None and activity.full  # the first run
    counters = await activity.counters(platform)
    assert counters is not None and not activity.full
    counter = counters.get(schema, 0)
    activity.visited(chain, counter)
    assert not activity.moved(chain, counter)
    assert activity.moved(chain, counter + 1)  # written since
    assert activity.moved(chain, None)  # unreadable

    # a new statistics epoch (PostgreSQL restarted, failed over, or its statistics reset)
    activity._epoch = ("an earlier start", "an earlier reset")
    await activity.counters(platform)
    assert activity.full and activity.moved(chain, counter)
    await activity.counters(platform)
    assert not activity.full
    activity.visited(chain, counter)

    # an hour since every chain was last visited
    assert activity._last_full is not None
    activity._last_full -= checkpointer.FULL_VISIT_S
    await activity.counters(platform)
    assert activity.full and activity.moved(chain, counter)
    await activity.counters(platform)
    assert not activity.full and not activity.moved(chain, counter)

    # this process wrote to it
    platform.db.mark_dirty(pid)
    await activity.counters(platform)
    assert activity.moved(chain, counter)
    activity.visited(chain, counter)
    assert not activity.moved(chain, counter)

    # the wiring in checkpoint_all: skipped on equal counters, visited when they are unreadable
    visits = Visits(monkeypatch, pid)

    async def same(self: ChainActivity, platform: Platform) -> dict[str, int]:
        self.full = False
        return {schema: counter}

    async def unreadable(self: ChainActivity, platform: Platform) -> None:
        self.full = False
        return None

    monkeypatch.setattr(ChainActivity, "counters", same)
    assert await visits.run(platform, activity) == {"control"}
    monkeypatch.setattr(ChainActivity, "counters", unreadable)
    assert await visits.run(platform, activity) == {"control", chain}
