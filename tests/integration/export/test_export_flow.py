"""Exports over HTTPS: the two-person flow for JSON Lines, CSV and Parquet (read back with
Hugging Face ``datasets``), COCO for boxes, one-time and requester-only links, and the audit."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from tests.integration.export.export_support import (
    BOX_SCHEMA,
    annotated_text_team,
    close_team,
    drain,
    marker,
    png_zip,
    ready_export,
    request_approve_build,
    wait_for_state,
)
from tests.integration.pipeline.conftest import Team, build_team
from tests.support.platform import SYSTEM, ServerThread

from labelvault.access.scope import ProjectScope
from labelvault.annotation.settings import update_settings
from labelvault.db.context import ProjectContext
from labelvault.platform import Platform


@pytest.fixture
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    return cache


def load_with_datasets(fmt: str, path: Path, cache: Path) -> list[dict[str, Any]]:
    import datasets

    builder = {"jsonl": "json", "parquet": "parquet", "csv": "csv"}[fmt]
    ds = datasets.load_dataset(
        builder, data_files=str(path), split="train", cache_dir=str(cache / "datasets")
    )
    return [dict(row) for row in ds]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
async def test_two_person_flow_and_one_time_download(
    fmt: str, platform: Platform, server: ServerThread, tmp_path: Path, hf_offline: Path
) -> None:
    mark = marker()
    team, expected = await annotated_text_team(platform, server, mark)
    try:
        owner, manager = team.clients["data_owner"], team.clients["manager"]
        built = await ready_export(team, platform, fmt)
        manifest = built["manifest"]
        assert built["item_count"] == 4
        assert manifest["counts"]["records"] == 4 and manifest["counts"]["items"] == 4
        assert manifest["counts"]["by_status"] == {"accepted": 3, "corrected": 1}
        assert manifest["filter"]["only_accepted"] is True
        url = team.url(f"/exports/{built['export_id']}")

        # only the requester gets a link, and only the requester downloads
        r = await manager.post(f"{url}/link")
        assert r.status_code == 403, r.text
        r = await owner.post(f"{url}/link")
        assert r.status_code == 200, r.text
        link = r.json()
        assert mark not in json.dumps(built)  # the export's record carries no content
        r = await manager.get(link["url"])
        assert r.status_code == 403, r.text
        r = await owner.get(link["url"].replace(link["token"], link["token"][:-2] + "xx"))
        assert r.status_code == 403

        r = await owner.get(link["url"])
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"].startswith("attachment")
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        body = r.content
        assert hashlib.sha256(body).hexdigest() == manifest["bundle"]["sha256"]
        # downloaded: the encrypted bundle is not kept (deleted once the response is over)
        spent = await _export_blob(platform, team, built["export_id"])
        for _ in range(100):
            if spent not in set(platform.blobs.list_ids(team.project_id)):
                break
            await asyncio.sleep(0.05)
        assert spent not in set(platform.blobs.list_ids(team.project_id))
        assert len(body) == manifest["bundle"]["bytes"]
        # once only
        r = await owner.get(link["url"])
        assert r.status_code == 410, r.text
        r = await owner.post(f"{url}/link")
        assert r.status_code == 409
        assert (await owner.get(url)).json()["state"] == "downloaded"

        path = tmp_path / f"bundle.{fmt}"
        path.write_bytes(body)
        rows = load_with_datasets(fmt, path, hf_offline)
        got: dict[str, list[str]] = {}
        for row in rows:
            result = row["result"]
            if isinstance(result, str):
                result = json.loads(result)
            got[row["text"]] = list(result["labels"])
            assert row["status"] in ("accepted", "corrected")
            if fmt == "parquet":
                assert list(row["labels"]) == got[row["text"]]
            metadata = row["metadata"]
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            assert "subject_id" not in metadata and "batch" in metadata
        assert got == expected
        assert "person-" not in body.decode("latin-1")  # subject ids never leave
        if fmt == "jsonl":  # the manifest's record digest, recomputed from the lines
            digest = hashlib.sha256()
            for line in body.splitlines():
                digest.update(hashlib.sha256(line).digest())
            assert digest.hexdigest() == manifest["records_sha256"]
        if fmt == "csv":
            header = next(csv.reader(io.StringIO(body.decode())))
            assert header[:3] == ["annotation_id", "item_id", "kind"]

        # the audit trail: request, approve, built, link, download, with the manifest hash
        r = await owner.get(team.url("/audit"), params={"limit": 200})
        assert r.status_code == 200, r.text
        events = [e for e in r.json()["events"] if e.get("resource_id") == built["export_id"]]
        actions = {e["action"]: e for e in events}
        assert {
            "export.request",
            "export.approve",
            "export.built",
            "export.link",
            "export.download",
        } <= set(actions)
        assert actions["export.request"]["actor_id"] == str(team.users["data_owner"].id)
        assert actions["export.approve"]["actor_id"] == str(team.users["manager"].id)
        for action in ("export.built", "export.download"):
            details = actions[action]["details"]
            assert details["manifest_sha256"] == built["manifest_sha256"]
            assert details["bundle_sha256"] == manifest["bundle"]["sha256"]
    finally:
        await close_team(team)


async def test_expired_link_rejection_and_no_approval_projects(
    platform: Platform, server: ServerThread
) -> None:
    team, _ = await annotated_text_team(platform, server, marker())
    try:
        owner, manager = team.clients["data_owner"], team.clients["manager"]
        # a rejected export never builds and can no longer be approved
        r = await manager.post(team.url("/exports"), json={"format": "csv", "only_accepted": False})
        rejected = r.json()
        r = await owner.post(team.url(f"/exports/{rejected['export_id']}/reject"))
        assert r.status_code == 200 and r.json()["state"] == "rejected"
        r = await owner.post(team.url(f"/exports/{rejected['export_id']}/approve"))
        assert r.status_code == 409

        # a project that needs no second approval (an administrator's decision: a manager may
        # not make it, see test_write_integrity.py): approved and queued at once
        r = await manager.put(team.url("/settings"), json={"export_requires_approval": False})
        assert r.status_code == 403
        admin = ProjectScope(
            team.project_id, SYSTEM, "system", privileged_reason="administrator access"
        )
        await update_settings(platform.db, admin, {"export_requires_approval": False})
        r = await owner.post(team.url("/exports"), json={"format": "jsonl", "only_accepted": False})
        assert r.status_code == 201 and r.json()["state"] == "approved", r.text
        url = team.url(f"/exports/{r.json()['export_id']}")
        await drain(platform)
        built = await wait_for_state(owner, url, {"ready", "failed"})
        assert built["state"] == "ready"
        # every annotation, whatever its review state
        assert built["manifest"]["counts"]["records"] == 6
        assert built["manifest"]["counts"]["by_status"] == {
            "accepted": 3,
            "corrected": 1,
            "in_review": 1,
            "rejected": 1,
        }

        # the list shows states and progress to managers and data owners
        listed = (await manager.get(team.url("/exports"))).json()
        assert {e["state"] for e in listed} == {"rejected", "ready"}

        link = (await owner.post(f"{url}/link")).json()
        async with platform.db.project_tx(team.project_id, ProjectContext(None, "system")) as conn:
            await conn.execute(
                "UPDATE exports SET download_expires_at = now() - interval "
                "'1 second' WHERE id = %s",
                [built["export_id"]],
            )
        r = await owner.get(link["url"])
        assert r.status_code == 410 and "expired" in r.json()["detail"]
        assert (await owner.get(url)).json()["state"] == "ready"
        fresh = (await owner.post(f"{url}/link")).json()
        r = await owner.get(link["url"])  # the old link was replaced
        assert r.status_code == 403
        r = await owner.get(fresh["url"])
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == built["manifest"]["bundle"]["sha256"]
    finally:
        await close_team(team)


async def test_annotators_and_reviewers_have_no_export_route(
    platform: Platform, server: ServerThread
) -> None:
    team, _ = await annotated_text_team(platform, server, marker())
    try:
        r = await team.clients["data_owner"].post(team.url("/exports"), json={"format": "jsonl"})
        eid = r.json()["export_id"]
        base = team.url("/exports")
        for name in ("annotator", "annotator2", "reviewer"):
            client = team.clients[name]
            calls = [
                client.post(base, json={"format": "jsonl"}),
                client.get(base),
                client.get(f"{base}/{eid}"),
                client.post(f"{base}/{eid}/approve"),
                client.post(f"{base}/{eid}/reject"),
                client.post(f"{base}/{eid}/link"),
                client.get(f"{base}/{eid}/download", params={"token": "x"}),
            ]
            for call in calls:
                r = await call
                assert r.status_code == 403, (name, r.request.url, r.text)
        # COCO needs a boxes project
        r = await team.clients["manager"].post(base, json={"format": "coco"})
        assert r.status_code == 422 and r.json()["field"] == "format"
    finally:
        await close_team(team)


async def test_coco_export_of_a_boxes_project(platform: Platform, server: ServerThread) -> None:
    team = await build_team(platform, server, BOX_SCHEMA)
    try:
        owner, manager = team.clients["data_owner"], team.clients["manager"]
        a1, reviewer = team.clients["annotator"], team.clients["reviewer"]
        r = await owner.post(
            team.url("/imports"), content=png_zip(3), params={"format": "zip", "name": "photos.zip"}
        )
        assert r.status_code == 201, r.text
        boxes_by_task: dict[str, list[dict[str, Any]]] = {}
        for n in range(3):
            task = (await a1.post(team.url("/tasks/next"))).json()
            assert task["kind"] == "image"
            boxes = [{"x": 1 + n, "y": 2, "w": 10, "h": 20, "label": "car"}]
            if n == 1:
                boxes.append({"x": 30, "y": 5.5, "w": 8, "h": 4, "label": "person"})
            r = await a1.post(
                team.url(f"/tasks/{task['task_id']}/annotation"), json={"result": {"boxes": boxes}}
            )
            assert r.status_code == 200, r.text
            boxes_by_task[task["task_id"]] = boxes
        for _ in range(3):
            review = (await reviewer.post(team.url("/reviews/next"))).json()
            r = await reviewer.post(
                team.url(f"/reviews/{review['review_id']}/decision"), json={"decision": "accept"}
            )
            assert r.status_code == 200
        r = await manager.post(team.url("/exports"), json={"format": "coco"})
        assert r.status_code == 201, r.text
        url = team.url(f"/exports/{r.json()['export_id']}")
        r = await owner.post(f"{url}/approve")
        assert r.status_code == 200, r.text
        await drain(platform)
        built = await wait_for_state(manager, url, {"ready", "failed"})
        assert built["state"] == "ready", built
        counts = built["manifest"]["counts"]
        assert counts["coco_images"] == 3 and counts["coco_annotations"] == 4
        link = (await manager.post(f"{url}/link")).json()
        r = await manager.get(link["url"])
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        coco = json.loads(r.content)
        assert [c["name"] for c in coco["categories"]] == ["car", "person"]
        names = sorted(i["file_name"] for i in coco["images"])
        assert names == [f"photos/img_{n}.png" for n in range(3)]
        assert all(i["width"] == 64 and i["height"] == 48 for i in coco["images"])
        ids = {i["id"] for i in coco["images"]}
        assert len(coco["annotations"]) == 4
        assert {a["image_id"] for a in coco["annotations"]} == ids
        person = [a for a in coco["annotations"] if a["category_id"] == 2]
        assert person and person[0]["bbox"] == [30, 5.5, 8, 4] and person[0]["area"] == 32
        assert sorted(a["bbox"][0] for a in coco["annotations"] if a["category_id"] == 1) == [
            1,
            2,
            3,
        ]
    finally:
        await close_team(team)


async def _export_blob(platform: Platform, team: Team, export_id: str) -> str | None:
    async with platform.db.project_tx(team.project_id, ProjectContext(None, "system")) as conn:
        cur = await conn.execute("SELECT blob_id FROM exports WHERE id = %s", [export_id])
        row = await cur.fetchone()
    return None if row is None else row[0]


async def test_a_bundle_gone_missing_fails_the_export_and_says_so(
    platform: Platform, server: ServerThread
) -> None:
    """The link is spent only once the bundle has opened: a bundle that is missing (or does
    not decrypt) answers 410, fails the export and is audited; nothing is streamed."""
    team, _ = await annotated_text_team(platform, server, marker())
    try:
        owner = team.clients["data_owner"]
        built = await ready_export(team, platform)
        url = team.url(f"/exports/{built['export_id']}")
        blob_id = await _export_blob(platform, team, built["export_id"])
        assert blob_id is not None
        platform.blobs.delete(team.project_id, blob_id)
        link = (await owner.post(f"{url}/link")).json()
        r = await owner.get(link["url"])
        assert r.status_code == 410, r.text
        assert "missing or damaged" in r.json()["detail"]
        after = (await owner.get(url)).json()
        assert after["state"] == "failed"
        r = await owner.get(team.url("/audit"), params={"limit": 200, "action": "export.failed"})
        assert [e["resource_id"] for e in r.json()["events"]] == [built["export_id"]]
    finally:
        await close_team(team)


async def test_a_build_that_cannot_be_recorded_fails_and_keeps_no_bundle(
    platform: Platform, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built, but the final write fails: the export is failed (never left 'building') and the
    bundle it wrote is deleted."""
    from labelvault.export import build

    async def cannot_record(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("the database went away at the last moment")

    monkeypatch.setattr(build, "_ready", cannot_record)
    team, _ = await annotated_text_team(platform, server, marker())
    try:
        before = set(platform.blobs.list_ids(team.project_id))
        built = await request_approve_build(team, platform, "jsonl")
        assert built["state"] == "failed", built
        assert "internal error" in built["error"]
        assert set(platform.blobs.list_ids(team.project_id)) == before
    finally:
        await close_team(team)


@pytest.mark.parametrize("recovers", [True, False])
async def test_a_bundle_that_does_not_decrypt_is_tried_again_with_a_fresh_keyring(
    recovers: bool, platform: Platform, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle re-encrypted under a key version this process has not loaded yet decrypts
    after one reload of the keyring, and the download goes on; one that still does not decrypt
    is damaged: 410, the export fails, the link is not spent on a 500."""
    from labelvault.crypto import DecryptionError
    from labelvault.keys.service import KeyService
    from labelvault.keys.values import ProjectCipher

    team, _ = await annotated_text_team(platform, server, marker())
    try:
        owner = team.clients["data_owner"]
        built = await ready_export(team, platform)
        url = team.url(f"/exports/{built['export_id']}")
        link = (await owner.post(f"{url}/link")).json()
        reloads: list[str] = []
        opened: list[str] = []
        real_reload, real_get_blob = KeyService.reload, ProjectCipher.get_blob

        async def reload(self: KeyService, scope: str) -> None:
            reloads.append(scope)
            await real_reload(self, scope)

        stale = server.platform.keys.cached(str(team.project_id))
        assert stale is not None

        def get_blob(self: ProjectCipher, *args: Any) -> Any:
            opened.append(args[-1])
            # "re-encrypted meanwhile": it opens only once the cipher's key service holds a
            # freshly loaded keyring
            fresh = self._keys.cached(self.scope) is not stale
            if not (recovers and fresh):
                raise DecryptionError("does not authenticate under the keys loaded")
            return real_get_blob(self, *args)

        monkeypatch.setattr(KeyService, "reload", reload)
        monkeypatch.setattr(ProjectCipher, "get_blob", get_blob)
        r = await owner.get(link["url"])
        assert reloads == [str(team.project_id)]
        assert len(opened) == 2 and len(set(opened)) == 1  # the same bundle, twice
        after = (await owner.get(url)).json()
        if recovers:
            assert r.status_code == 200, r.text
            assert hashlib.sha256(r.content).hexdigest() == built["manifest"]["bundle"]["sha256"]
            assert after["state"] == "downloaded"
        else:
            assert r.status_code == 410 and "missing or damaged" in r.json()["detail"], r.text
            assert after["state"] == "failed"
    finally:
        await close_team(team)
