"""The SDK end to end over the real HTTPS server: each role's journey, errors mapped to the
exception hierarchy, the token kept out of every repr, str and message."""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from tests.integration.sdk.sdk_support import SdkTeam, export_routes_exist
from tests.support.platform import free_port

from labelvault.client import (
    AsyncClient,
    Client,
    Conflict,
    CredentialsError,
    Forbidden,
    ImportReport,
    Invalid,
    LabelVaultClientError,
    NotFound,
    Task,
    TransportFailed,
    Unauthorized,
    resolve_token,
)
from labelvault.platform import Platform


def _jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


async def test_every_role_journey_async(sdk_team: SdkTeam, tmp_path: Path) -> None:
    pid = sdk_team.project_id
    owner, manager = sdk_team.aclient("data_owner"), sdk_team.aclient("manager")
    a1, a2, reviewer = (
        sdk_team.aclient("annotator"),
        sdk_team.aclient("annotator2"),
        sdk_team.aclient("reviewer"),
    )
    try:
        settings = await manager.update_settings(pid, overlap=2, review_share=1.0)
        assert settings.overlap == 2
        schema = await manager.get_label_schema(pid)
        assert schema is not None and schema["labels"] == ["spam", "ham"]
        project = await owner.get_project(pid)
        assert project.id == pid

        # data owner imports (streamed from a file); progress sees every byte
        src = _jsonl(
            tmp_path / "items.jsonl",
            [{"text": f"message {n}", "subject_id": f"s{n % 2}"} for n in range(4)]
            + [{"text": "message 0"}],
        )
        sent: list[int] = []
        report = await owner.import_file(pid, src, progress=sent.append)
        assert isinstance(report, ImportReport)
        assert (report.items_added, report.duplicates, report.rejected) == (4, 1, 0)
        assert report.format == "jsonl" and report.import_id is not None
        assert sum(sent) == src.stat().st_size

        # annotators: next task -> submit until there is no more work
        for client in (a1, a2):
            done = 0
            while (task := await client.next_task(pid)) is not None:
                assert isinstance(task, Task) and task.text and task.text.startswith("message")
                assert task.lease_expires_at is not None
                label = "spam" if int(task.text.split()[-1]) % 2 else "ham"
                out = await client.submit(pid, task.task_id, {"labels": [label]})
                assert out.version == 1 and out.state in ("submitted", "in_review")
                done += 1
            assert done == 4
            mine = await client.my_annotations(pid, limit=10)
            assert len(mine) == 4 and all(m.result["labels"] for m in mine)

        # reviewer decides
        queue = await reviewer.review_queue(pid)
        assert len(queue) == 8
        review = await reviewer.next_review(pid)
        assert review is not None and review.text is not None
        decision = await reviewer.decide(pid, review.review_id, "accept")
        assert decision.state == "accepted"
        with pytest.raises(Conflict) as conflict:
            await reviewer.decide(pid, review.review_id, "accept")
        assert conflict.value.status == 409
        with pytest.raises(Invalid) as invalid:
            nxt = await reviewer.next_review(pid)
            assert nxt is not None
            await reviewer.decide(pid, nxt.review_id, "reject")  # a rejection needs a comment
        assert invalid.value.field == "comment"

        # manager reads aggregates (no content)
        stats = await manager.aggregates(pid)
        assert stats.items == 4
        assert stats.reviews.decided == 1
        assert stats.agreement is not None and stats.agreement["value"] == 1.0
        assert "message" not in json.dumps(stats.raw)
        page = await manager.audit(pid, limit=5)
        assert len(page.events) <= 5
    finally:
        for c in (owner, manager, a1, a2, reviewer):
            await c.aclose()


def test_sync_client_journey_and_errors(sdk_team: SdkTeam, tmp_path: Path) -> None:
    pid = sdk_team.project_id
    with (
        sdk_team.client("data_owner") as owner,
        sdk_team.client("annotator") as a1,
        sdk_team.client("manager") as manager,
        sdk_team.client("reviewer") as reviewer,
    ):
        src = tmp_path / "one.txt"
        src.write_text("hello world\nsecond line\n")
        assert owner.import_file(pid, src, fmt="text").items_added == 2

        task = a1.next_task(pid)
        assert task is not None
        assert a1.get_task(pid, task.task_id).task_id == task.task_id
        # 422 with the field named
        with pytest.raises(Invalid) as bad:
            a1.submit(pid, task.task_id, {"labels": ["nope"]})
        assert bad.value.status == 422 and bad.value.field and bad.value.code
        a1.skip(pid, task.task_id)
        # 404: unknown task, unknown project (not one the token may name)
        with pytest.raises(NotFound):
            a1.get_task(pid, uuid.uuid4())
        with pytest.raises((NotFound, Forbidden)):
            a1.next_task(uuid.uuid4())
        # 403: role may not
        with pytest.raises(Forbidden) as forbidden:
            a1.aggregates(pid)
        assert forbidden.value.status == 403 and forbidden.value.detail
        with pytest.raises(Forbidden):
            reviewer.next_task(pid)
        with pytest.raises(Forbidden):
            a1.import_file(pid, src)
        with pytest.raises(Forbidden):
            a1.audit(pid)
        assert manager.aggregates(pid).items == 2
        # a rejected import: 422 carrying the report with line numbers
        bad_file = tmp_path / "bad.jsonl"
        bad_file.write_text('{"text": "fine"}\n{"nope": 1}\nnot json\n')
        with pytest.raises(Invalid) as rejected:
            owner.import_file(pid, bad_file)
        assert rejected.value.code == "bad_rows"
        assert rejected.value.report is not None
        assert [e["line"] for e in rejected.value.report["errors"]] == [2, 3]
        assert manager.aggregates(pid).items == 2  # nothing half-written
        skipped = owner.import_file(pid, bad_file, on_error="skip")
        assert (skipped.items_added, skipped.rejected) == (1, 2)
        assert [e.line for e in skipped.errors] == [2, 3]


def test_token_never_shown(sdk_team: SdkTeam) -> None:
    token = sdk_team.tokens["annotator"]
    client = sdk_team.client("annotator")
    try:
        texts = [repr(client), str(client), repr(client._auth), repr(vars(client))]
        with pytest.raises(Forbidden) as exc:
            client.aggregates(sdk_team.project_id)
        texts += [repr(exc.value), str(exc.value), repr(exc.value.body), str(exc.value.args)]
        for t in texts:
            assert token not in t
            assert token[-12:] not in t
    finally:
        client.close()
    # a wrong token: 401, and the token is not echoed either
    wrong = "lvt_" + "x" * 40
    with (
        Client(sdk_team.server.url, wrong, verify=str(sdk_team.server.ca_file)) as bad,
        pytest.raises(Unauthorized) as unauth,
    ):
        bad.get_project(sdk_team.project_id)
    assert wrong not in str(unauth.value) and wrong not in repr(unauth.value)
    assert unauth.value.status == 401


def test_transport_and_tls_failures_are_clear(sdk_team: SdkTeam) -> None:
    token = sdk_team.tokens["annotator"]
    # the server's certificate is not trusted by the system store
    with Client(sdk_team.server.url, token) as client, pytest.raises(TransportFailed) as tls:
        client.next_task(sdk_team.project_id)
    assert token not in str(tls.value)
    with (
        Client(f"https://localhost:{free_port()}", token, timeout=3) as client,
        pytest.raises(TransportFailed) as refused,
    ):
        client.next_task(sdk_team.project_id)
    assert "cannot connect" in str(refused.value) and token not in str(refused.value)


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABELVAULT_TOKEN", raising=False)
    monkeypatch.delenv("LABELVAULT_TOKEN_FILE", raising=False)
    with pytest.raises(CredentialsError):
        resolve_token()
    assert resolve_token("direct") == "direct"
    monkeypatch.setenv("LABELVAULT_TOKEN", "from-env")
    assert resolve_token() == "from-env"
    monkeypatch.delenv("LABELVAULT_TOKEN")
    path = tmp_path / "token"
    path.write_text("from-file\n")
    path.chmod(0o600)
    monkeypatch.setenv("LABELVAULT_TOKEN_FILE", str(path))
    assert resolve_token() == "from-file"
    path.chmod(0o644)
    with pytest.raises(CredentialsError) as world:
        resolve_token()
    assert "chmod 600" in str(world.value) and "from-file" not in str(world.value)
    assert os.stat(path).st_mode & stat.S_IROTH
    with pytest.raises(CredentialsError):
        Client("https://localhost:1", token_file=path)


@pytest.mark.skipif(
    not export_routes_exist(),
    reason="export routes (POST /exports, /approve, /link, /download) are not "
    "mounted in this checkout yet",
)
async def test_export_request_approve_download(
    sdk_team: SdkTeam, platform: Platform, tmp_path: Path
) -> None:
    from labelvault.jobs import run_pending_jobs

    pid = sdk_team.project_id
    async with (
        sdk_team.aclient("data_owner") as owner,
        sdk_team.aclient("manager") as manager,
        sdk_team.aclient("annotator") as a1,
    ):
        await owner.import_file(
            pid, _jsonl(tmp_path / "x.jsonl", [{"text": f"export row {n}"} for n in range(3)])
        )
        while (task := await a1.next_task(pid)) is not None:
            await a1.submit(pid, task.task_id, {"labels": ["spam"]})
        with pytest.raises(Forbidden):
            await a1.request_export(pid)
        with pytest.raises(Invalid) as bad_format:
            await owner.request_export(pid, "xml")
        assert bad_format.value.field == "format"
        export = await owner.request_export(pid, "jsonl", only_accepted=False)
        assert export.state == "pending_approval" and export.format == "jsonl"
        with pytest.raises(Conflict):  # not ready: no link yet
            await owner.create_download_link(pid, export.export_id)
        approved = await manager.approve_export(pid, export.export_id)
        assert approved.state in ("approved", "building", "ready")
        await run_pending_jobs(platform)  # the job queue, run in this process
        ready = await owner.wait_for_export(pid, export.export_id, max_wait=120, interval=0.2)
        assert ready.ready and ready.item_count == 3
        link = await owner.create_download_link(pid, export.export_id)
        assert link.token and link.token not in repr(link)
        out = await owner.download_export(pid, export.export_id, tmp_path / "export.out", link=link)
        data = (tmp_path / "export.out").read_bytes()
        assert out.bytes == len(data) > 0
        assert data.count(b"export row") == 3
        assert not list(tmp_path.glob(".*.part"))  # noqa: ASYNC240
        with pytest.raises(LabelVaultClientError) as again:  # one download per export
            await owner.download_export(pid, export.export_id, tmp_path / "again.out", link=link)
        assert again.value.status in (403, 409, 410)
        assert not (tmp_path / "again.out").exists()
        listed = await owner.list_exports(pid)
        assert [e.export_id for e in listed] == [export.export_id]
        assert listed[0].state == "downloaded"


async def test_async_errors_share_the_hierarchy(sdk_team: SdkTeam) -> None:
    async with AsyncClient(
        sdk_team.server.url, sdk_team.tokens["manager"], verify=sdk_team.server.client_context()
    ) as manager:
        with pytest.raises(Forbidden):
            await manager.next_task(sdk_team.project_id)
        with pytest.raises(Invalid) as bad:
            await manager.update_settings(sdk_team.project_id, overlap="many")
        assert bad.value.field == "overlap"
        with pytest.raises(LabelVaultClientError):
            await manager.assign(sdk_team.project_id, uuid.uuid4(), 1)
