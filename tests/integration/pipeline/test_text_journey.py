"""Each role's journey over HTTPS, including every refusal the issue lists."""

from __future__ import annotations

import json
import uuid

from tests.integration.pipeline.conftest import Team

from labelvault.db.context import ProjectContext
from labelvault.platform import Platform


def jsonl(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


async def test_import_annotate_review_aggregate(team: Team) -> None:
    owner, manager = team.clients["data_owner"], team.clients["manager"]
    a1, a2, reviewer = (
        team.clients["annotator"],
        team.clients["annotator2"],
        team.clients["reviewer"],
    )
    r = await manager.put(team.url("/settings"), json={"overlap": 2})
    assert r.status_code == 200 and r.json()["overlap"] == 2
    rows = [{"text": f"message number {n}", "subject_id": f"person-{n % 3}"} for n in range(6)]
    rows.append({"text": "message number 0"})  # a duplicate
    r = await owner.post(team.url("/imports"), content=jsonl(rows), params={"format": "jsonl"})
    assert r.status_code == 201, r.text
    assert r.json()["items_added"] == 6 and r.json()["duplicates"] == 1

    served: dict[str, set[str]] = {"a1": set(), "a2": set()}
    for name, client in (("a1", a1), ("a2", a2)):
        for _ in range(6):
            r = await client.post(team.url("/tasks/next"))
            assert r.status_code == 200, r.text
            task = r.json()
            assert task["text"].startswith("message number")
            assert task["label_schema"]["labels"] == ["spam", "ham"]
            served[name].add(task["item_id"])
            label = "spam" if int(task["text"].split()[-1]) % 2 else "ham"
            r = await client.post(
                team.url(f"/tasks/{task['task_id']}/annotation"),
                json={"result": {"labels": [label]}},
            )
            assert r.status_code == 200, r.text
        # every item once per annotator: overlap 2, never two slots of one item for one person
        assert (await client.post(team.url("/tasks/next"))).status_code == 204
    assert served["a1"] == served["a2"] and len(served["a1"]) == 6

    queue = (await reviewer.get(team.url("/reviews"))).json()
    assert len(queue) == 12
    r = await reviewer.post(team.url("/reviews/next"))
    review = r.json()
    assert review["content"]["text"].startswith("message number")
    r = await reviewer.post(
        team.url(f"/reviews/{review['review_id']}/decision"), json={"decision": "accept"}
    )
    assert r.status_code == 200 and r.json()["state"] == "accepted"
    r = await reviewer.post(
        team.url(f"/reviews/{review['review_id']}/decision"), json={"decision": "accept"}
    )
    assert r.status_code == 409
    # decided, it has left the queue: its content is not shown again
    r = await reviewer.get(team.url(f"/reviews/{review['review_id']}"))
    assert r.status_code == 403 and "accepted" in r.json()["detail"], r.text
    assert "message number" not in r.text
    pending = queue[-1]["review_id"]
    assert pending != review["review_id"]
    r = await reviewer.get(team.url(f"/reviews/{pending}"))
    assert r.status_code == 200 and r.json()["content"]["text"].startswith("message number")

    stats = (await manager.get(team.url("/aggregates"))).json()
    assert stats["items"] == 6
    assert (
        stats["tasks_by_state"].get("submitted", 0) + stats["tasks_by_state"].get("accepted", 0)
        == 12
    )
    assert stats["reviews"]["decided"] == 1
    assert stats["agreement"]["metric"] in ("cohen_kappa", "fleiss_kappa")
    assert stats["agreement"]["value"] == 1.0
    assert "message number" not in json.dumps(stats)  # aggregates carry no content


async def test_rejection_goes_back_to_the_annotator_with_the_comment(
    team: Team, platform: Platform
) -> None:
    owner, a1, reviewer = (
        team.clients["data_owner"],
        team.clients["annotator"],
        team.clients["reviewer"],
    )
    await owner.post(team.url("/imports"), content=b"just one line\n", params={"format": "text"})
    task = (await a1.post(team.url("/tasks/next"))).json()
    await a1.post(
        team.url(f"/tasks/{task['task_id']}/annotation"), json={"result": {"labels": ["spam"]}}
    )
    review = (await reviewer.post(team.url("/reviews/next"))).json()
    r = await reviewer.post(
        team.url(f"/reviews/{review['review_id']}/decision"), json={"decision": "reject"}
    )
    assert r.status_code == 422 and r.json()["field"] == "comment"
    r = await reviewer.post(
        team.url(f"/reviews/{review['review_id']}/decision"),
        json={"decision": "reject", "comment": "it is ham"},
    )
    assert r.status_code == 200
    # rejected, its annotator may reopen it to revise the answer
    r = await a1.get(team.url(f"/tasks/{task['task_id']}"))
    assert r.status_code == 200 and r.json()["review_comment"] == "it is ham"
    # handed back, it stays its annotator's: it cannot be skipped into the pool, and after its
    # lease runs out nobody else is handed it
    r = await a1.post(team.url(f"/tasks/{task['task_id']}/skip"))
    assert r.status_code == 409
    assert (await a1.post(team.url("/tasks/next"))).json()["task_id"] == task["task_id"]
    async with platform.db.project_tx(team.project_id, ProjectContext(None, "system")) as conn:
        await conn.execute(
            "UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
            [task["task_id"]],
        )
    r = await team.clients["annotator2"].post(team.url("/tasks/next"))
    assert r.status_code == 204
    again = (await a1.post(team.url("/tasks/next"))).json()
    assert again["task_id"] == task["task_id"]
    assert again["review_comment"] == "it is ham"
    assert again["annotation"] == {"labels": ["spam"]}
    r = await a1.post(
        team.url(f"/tasks/{task['task_id']}/annotation"), json={"result": {"labels": ["ham"]}}
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    review = (await reviewer.post(team.url("/reviews/next"))).json()
    assert review["result"] == {"labels": ["ham"]}
    r = await reviewer.post(
        team.url(f"/reviews/{review['review_id']}/decision"),
        json={"decision": "correct", "result": {"labels": ["spam"]}},
    )
    assert r.status_code == 200
    # decided: the annotator can no longer change it, nor reopen it to read the content again
    r = await a1.post(
        team.url(f"/tasks/{task['task_id']}/annotation"), json={"result": {"labels": ["ham"]}}
    )
    assert r.status_code == 409
    r = await a1.get(team.url(f"/tasks/{task['task_id']}"))
    assert r.status_code == 403 and "decided" in r.json()["detail"]
    assert "just one line" not in r.text
    r = await a1.get(team.url("/my/annotations"))
    assert [row["editable"] for row in r.json()] == [False]


async def test_invalid_results_name_the_field(team: Team) -> None:
    owner, a1 = team.clients["data_owner"], team.clients["annotator"]
    await owner.post(team.url("/imports"), content=b"hello world\n", params={"format": "text"})
    task = (await a1.post(team.url("/tasks/next"))).json()
    for result in (
        {"labels": ["nope"]},
        {"labels": ["spam", "ham"]},
        {"labels": "spam"},
        {"labels": []},
        {"oops": 1},
    ):
        r = await a1.post(team.url(f"/tasks/{task['task_id']}/annotation"), json={"result": result})
        assert r.status_code == 422, result
        assert r.json()["field"]


async def test_refusals(team: Team, platform: object) -> None:
    owner, a1, a2 = (
        team.clients["data_owner"],
        team.clients["annotator"],
        team.clients["annotator2"],
    )
    reviewer, manager = team.clients["reviewer"], team.clients["manager"]
    await owner.post(team.url("/imports"), content=b"one\ntwo\n", params={"format": "text"})
    mine = (await a1.post(team.url("/tasks/next"))).json()
    # another annotator's task: does not exist for them
    assert (await a2.get(team.url(f"/tasks/{mine['task_id']}"))).status_code == 404
    r = await a2.post(
        team.url(f"/tasks/{mine['task_id']}/annotation"), json={"result": {"labels": ["spam"]}}
    )
    assert r.status_code == 404
    # a task id of another project, and a malformed one
    assert (await a1.get(team.url(f"/tasks/{uuid.uuid4()}"))).status_code == 404
    assert (await a1.get(team.url("/tasks/not-a-uuid"))).status_code == 404
    # annotators have no list of items, no imports, no aggregates, no audit, no review queue
    assert (await a1.get(team.url("/aggregates"))).status_code == 403
    assert (await a1.post(team.url("/imports"), content=b"x\n")).status_code == 403
    assert (await a1.get(team.url("/audit"))).status_code == 403
    assert (await a1.get(team.url("/reviews"))).status_code == 403
    # a reviewer outside their queue
    assert (await reviewer.get(team.url(f"/reviews/{uuid.uuid4()}"))).status_code == 404
    assert (await reviewer.post(team.url("/tasks/next"))).status_code == 403
    # a manager asking for raw content
    assert (await manager.get(team.url(f"/tasks/{mine['task_id']}"))).status_code == 403
    assert (await manager.post(team.url("/reviews/next"))).status_code == 403
    # the task held now reopens; once its lease has run out, it does not
    assert (await a1.get(team.url(f"/tasks/{mine['task_id']}"))).status_code == 200
    assert isinstance(platform, Platform)
    async with platform.db.project_tx(team.project_id, ProjectContext(None, "system")) as conn:
        await conn.execute(
            "UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
            [mine["task_id"]],
        )
    r = await a1.get(team.url(f"/tasks/{mine['task_id']}"))
    assert r.status_code == 403 and "lease" in r.json()["detail"], r.text
