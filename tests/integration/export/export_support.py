"""Helpers of the export tests: an annotated project over HTTP, running the job queue in this
process, waiting for an export, the real CLI in a subprocess, raw bytes of blobs."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image
from tests.integration.pipeline.conftest import Team, build_team
from tests.support.platform import (
    ServerThread,
    cli_env,  # noqa: F401 - re-exported
)

from labelvault.jobs import run_pending_jobs
from labelvault.platform import Platform

LABELVAULT = str(Path(sys.executable).with_name("labelvault"))
TEXT_SCHEMA: dict[str, object] = {"kind": "text_classification", "labels": ["spam", "ham"]}
BOX_SCHEMA: dict[str, object] = {"kind": "image_boxes", "labels": ["car", "person"]}


def marker() -> str:
    return f"LVEXPORT{secrets.token_hex(12)}"


def jsonl(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


async def close_team(team: Team) -> None:
    for client in team.clients.values():
        await client.aclose()


async def annotated_text_team(
    platform: Platform, server: ServerThread, mark: str
) -> tuple[Team, dict[str, list[str]]]:
    """Six texts; the annotator labels them all; the reviewer accepts three, corrects one
    (flipping its label), rejects one, leaves one pending. Returns the expected accepted labels by
    text."""
    team = await build_team(platform, server, TEXT_SCHEMA)
    owner, a1, reviewer = (
        team.clients["data_owner"],
        team.clients["annotator"],
        team.clients["reviewer"],
    )
    rows: list[dict[str, object]] = [
        {"text": f"{mark} message {n}", "subject_id": f"person-{n}", "metadata": {"batch": n % 2}}
        for n in range(6)
    ]
    r = await owner.post(team.url("/imports"), content=jsonl(rows), params={"format": "jsonl"})
    assert r.status_code == 201, r.text
    for _ in range(6):
        task = (await a1.post(team.url("/tasks/next"))).json()
        label = "spam" if int(task["text"].split()[-1]) % 2 else "ham"
        r = await a1.post(
            team.url(f"/tasks/{task['task_id']}/annotation"), json={"result": {"labels": [label]}}
        )
        assert r.status_code == 200, r.text
    expected: dict[str, list[str]] = {}
    decisions = ["accept", "accept", "accept", "correct", "reject", None]
    for decision in decisions:
        if decision is None:
            break
        review = (await reviewer.post(team.url("/reviews/next"))).json()
        body: dict[str, Any] = {"decision": decision}
        flipped = ["ham"] if review["result"]["labels"] == ["spam"] else ["spam"]
        if decision == "correct":
            body["result"] = {"labels": flipped}
        if decision == "reject":
            body["comment"] = "look again"
        r = await reviewer.post(team.url(f"/reviews/{review['review_id']}/decision"), json=body)
        assert r.status_code == 200, r.text
        text = review["content"]["text"]
        if decision in ("accept", "correct"):
            expected[text] = flipped if decision == "correct" else review["result"]["labels"]
    return team, expected


def png_zip(count: int, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in range(count):
            img = Image.new("RGB", size, (n * 40 % 256, 100, 200))
            out = io.BytesIO()
            img.save(out, format="PNG")
            zf.writestr(f"photos/img_{n}.png", out.getvalue())
    return buf.getvalue()


async def drain(platform: Platform) -> None:
    """Run every queued job in this process (the worker of the test)."""
    await run_pending_jobs(platform)


async def wait_for_state(
    client: Any, url: str, states: set[str], within: float = 120
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] in states:
            return body
        assert loop.time() < deadline, f"export still {body['state']}"
        await asyncio.sleep(0.2)


async def request_approve_build(team: Team, platform: Platform, fmt: str) -> dict[str, Any]:
    """Request (data owner), refused self-approval, approval (manager), build: the export
    once ready or failed."""
    owner, manager = team.clients["data_owner"], team.clients["manager"]
    r = await owner.post(team.url("/exports"), json={"format": fmt})
    assert r.status_code == 201, r.text
    export = r.json()
    assert export["state"] == "pending_approval" and export["only_accepted"] is True
    url = team.url(f"/exports/{export['export_id']}")
    # the requester cannot approve their own export
    r = await owner.post(f"{url}/approve")
    assert r.status_code == 403, r.text
    assert "second manager or data owner" in r.json()["detail"]
    # nothing runs before the approval
    await drain(platform)
    assert (await owner.get(url)).json()["state"] == "pending_approval"
    r = await manager.post(f"{url}/approve")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved"
    assert r.json()["approved_by"] == str(team.users["manager"].id)
    await drain(platform)
    return await wait_for_state(owner, url, {"ready", "failed"})


async def ready_export(team: Team, platform: Platform, fmt: str = "jsonl") -> dict[str, Any]:
    """:func:`request_approve_build`, which must end with the export ready."""
    built = await request_approve_build(team, platform, fmt)
    assert built["state"] == "ready", built
    return built


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``labelvault worker`` in a subprocess, its output going to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [LABELVAULT, "worker", *args], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
