"""The server's periodic checkpointer visits only the project chains written to since its last
visit (PostgreSQL's write statistics, one control-plane query), so idle projects' pools stay
closed; a chain written to is visited and signed again."""

from __future__ import annotations

import asyncio

import pytest
from audit_support import append_events, new_project

from labelvault.audit import checkpointer
from labelvault.audit.checkpointer import ChainActivity, checkpoint_all, project_chain_id
from labelvault.platform import Platform

# the statistics of a write reach the shared counters within about ten seconds (a backend
# flushes them at most once a second, or after ten idle seconds)
SETTLE_S = 30.0
FLUSH_S = 11.0


async def _visits(platform: Platform, activity: ChainActivity, spy: list[str]) -> set[str]:
    spy.clear()
    await checkpoint_all(platform, activity=activity)
    return set(spy)


async def test_idle_chains_are_skipped_written_ones_visited(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy, idle = await new_project(platform), await new_project(platform)
    await append_events(platform, busy, 2)
    await append_events(platform, idle, 2)
    ours = {project_chain_id(busy), project_chain_id(idle)}
    spy: list[str] = []
    real = checkpointer.checkpoint_chain

    async def visited(platform: Platform, chain_id: str, *args: object, **kw: object) -> object:
        spy.append(chain_id)
        return await real(platform, chain_id, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpointer, "checkpoint_chain", visited)
    activity = ChainActivity()
    # the first run visits every chain; runs follow until the statistics of the visits
    # themselves (sealing, signing) have settled and our two chains are left alone
    first = await _visits(platform, activity, spy)
    assert ours | {"control"} <= first
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * SETTLE_S
    while True:
        seen = await _visits(platform, activity, spy)
        if not seen & ours:  # quiet: still quiet once every pending statistic has arrived
            await asyncio.sleep(FLUSH_S)
            seen = await _visits(platform, activity, spy)
            if not seen & ours:
                break
        assert loop.time() < deadline, f"still visiting {seen & ours}"
        await asyncio.sleep(1)
    assert "control" in seen  # the control chain is always visited

    # an event in one project: its chain is visited (and signed at the new size), not the other
    await append_events(platform, busy, 1)
    deadline = loop.time() + SETTLE_S
    while project_chain_id(busy) not in (seen := await _visits(platform, activity, spy)):
        assert loop.time() < deadline, "the written chain was never visited"
        await asyncio.sleep(1)
    assert project_chain_id(idle) not in seen
    signed = {
        r.chain_id: r.size
        for r in await checkpointer.checkpoint_all(platform)  # the command: every chain
    }
    assert project_chain_id(busy) not in signed  # already signed at its new size by the visit


async def test_unreadable_statistics_mean_every_chain_is_visited(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = await new_project(platform)
    activity = ChainActivity()
    await checkpoint_all(platform, activity=activity)
    spy: list[str] = []
    real = checkpointer.checkpoint_chain

    async def visited(platform: Platform, chain_id: str, *args: object, **kw: object) -> object:
        spy.append(chain_id)
        return await real(platform, chain_id, *args, **kw)  # type: ignore[arg-type]

    async def unreadable(self: ChainActivity, platform: Platform) -> None:
        return None

    monkeypatch.setattr(checkpointer, "checkpoint_chain", visited)
    monkeypatch.setattr(ChainActivity, "counters", unreadable)
    assert project_chain_id(pid) in await _visits(platform, activity, spy)
