"""Explicit assignment by a manager, and skips: an assigned task is served only to its
annotator, a skipped one goes back to the manager (never into automatic distribution), and an
annotator is never assigned an item they skipped (it would never be served to them)."""

from __future__ import annotations

import json

from tests.integration.pipeline.conftest import Team

from labelvault.db.context import ProjectContext
from labelvault.platform import Platform


def _jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


async def _drain(client, team: Team) -> list[str]:  # type: ignore[no-untyped-def]
    """Every task served to ``client`` until none is left (each submitted); their texts."""
    texts = []
    while True:
        r = await client.post(team.url("/tasks/next"))
        if r.status_code == 204:
            return texts
        assert r.status_code == 200, r.text
        task = r.json()
        texts.append(task["text"])
        r = await client.post(
            team.url(f"/tasks/{task['task_id']}/annotation"), json={"result": {"labels": ["ham"]}}
        )
        assert r.status_code == 200, r.text


async def test_assignment_and_skips(team: Team, platform: Platform) -> None:
    manager, owner = team.clients["manager"], team.clients["data_owner"]
    a1, a2 = team.clients["annotator"], team.clients["annotator2"]
    r = await manager.put(team.url("/settings"), json={"auto_distribution": False})
    assert r.status_code == 200, r.text
    r = await owner.post(
        team.url("/imports"), content=_jsonl(["one", "two", "three"]), params={"format": "jsonl"}
    )
    assert r.status_code == 201, r.text

    def assign(who: str, count: int) -> dict[str, object]:
        return {"annotator_id": str(team.users[who].id), "count": count}

    assert (await a1.post(team.url("/tasks/next"))).status_code == 204  # nothing assigned yet
    r = await manager.post(team.url("/assignments"), json=assign("annotator", 2))
    assert r.status_code == 200 and r.json() == {"assigned": 2}, r.text
    assert (await a2.post(team.url("/tasks/next"))).status_code == 204  # a1's, not a2's
    # assigned is not served: content comes one task at a time, through next-task only
    async with platform.db.project_tx(team.project_id, ProjectContext(None, "system")) as conn:
        cur = await conn.execute("SELECT id FROM tasks WHERE state = 'assigned'")
        assigned = [str(row[0]) for row in await cur.fetchall()]
    assert len(assigned) == 2
    for task_id in assigned:
        r = await a1.get(team.url(f"/tasks/{task_id}"))
        assert r.status_code == 403, r.text

    # a1 skips the first: it goes back to the manager, not into a pool
    task = (await a1.post(team.url("/tasks/next"))).json()
    skipped = task["text"]
    r = await a1.post(team.url(f"/tasks/{task['task_id']}/skip"))
    assert r.status_code in (200, 204), r.text
    assert await _drain(a1, team) == [t for t in ("one", "two") if t != skipped]

    # assigning a1 everything open: never the item a1 skipped
    r = await manager.post(team.url("/assignments"), json=assign("annotator", 10))
    assert r.json() == {"assigned": 1}, r.text
    assert await _drain(a1, team) == ["three"]
    # the skipped one is the manager's to give to someone else
    r = await manager.post(team.url("/assignments"), json=assign("annotator2", 10))
    assert r.json() == {"assigned": 1}, r.text
    assert await _drain(a2, team) == [skipped]
