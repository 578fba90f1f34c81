"""An annotator revising while the reviewer decides: the two serialise on the task, and each
request gets a clear answer (never a deadlock, never a 500)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from tests.integration.pipeline.conftest import Team

ROUNDS = 25


async def test_revising_while_the_reviewer_decides(team: Team) -> None:
    owner, annotator, reviewer = (
        team.clients["data_owner"],
        team.clients["annotator"],
        team.clients["reviewer"],
    )
    rows = "".join(json.dumps({"text": f"race {n}"}) + "\n" for n in range(ROUNDS))
    r = await owner.post(team.url("/imports"), content=rows.encode(), params={"format": "jsonl"})
    assert r.status_code == 201, r.text
    outcomes: Counter[tuple[int, int]] = Counter()
    for _ in range(ROUNDS):
        task = (await annotator.post(team.url("/tasks/next"))).json()
        annotation = team.url(f"/tasks/{task['task_id']}/annotation")
        r = await annotator.post(annotation, json={"result": {"labels": ["spam"]}})
        assert r.status_code == 200 and r.json()["state"] == "in_review", r.text
        review = (await reviewer.post(team.url("/reviews/next"))).json()
        revised, decided = await asyncio.gather(
            annotator.post(annotation, json={"result": {"labels": ["ham"]}}),
            reviewer.post(
                team.url(f"/reviews/{review['review_id']}/decision"), json={"decision": "accept"}
            ),
        )
        outcome = (revised.status_code, decided.status_code)
        # the revision first: it goes back to the same reviewer, who accepts it; the decision
        # first: the annotation is reviewed and can no longer change
        assert outcome in ((200, 200), (409, 200)), (revised.text, decided.text)
        outcomes[outcome] += 1
        mine = (await annotator.get(team.url("/my/annotations"), params={"limit": 1})).json()
        final = mine[0]
        assert final["task_id"] == task["task_id"] and final["state"] == "accepted", final
        if outcome == (409, 200):
            assert final["result"] == {"labels": ["spam"]}
    assert sum(outcomes.values()) == ROUNDS
