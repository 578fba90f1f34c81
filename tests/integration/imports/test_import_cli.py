"""``labelvault import`` as real processes: local imports are all-or-nothing even when the
process is SIGKILLed mid-way; remote imports and ``labelvault remote`` go through the SDK."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from tests.integration.foundation.foundation_cli import LABELVAULT, cli_env, run
from tests.integration.sdk.sdk_support import SdkTeam, build_sdk_team
from tests.support.platform import ServerThread

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.context import ProjectContext
from labelvault.db.names import project_schema
from labelvault.platform import Platform
from labelvault.settings import Settings

BIG_LINES = 200_000


def _env(settings: Settings) -> dict[str, str]:
    return cli_env(LABELVAULT_DATA_DIR=str(settings.data_dir), LABELVAULT_LOG_LEVEL="warning")


async def _counts(platform: Platform, project_id: uuid.UUID) -> dict[str, int]:
    """Items per import id, read as the platform (context "system")."""
    async with platform.db.project_tx(project_id, ProjectContext(None, "system")) as conn:
        cur = await conn.execute("SELECT import_id::text, count(*) FROM items GROUP BY 1")
        return {str(r[0]): int(r[1]) for r in await cur.fetchall()}


async def _imports(platform: Platform, project_id: uuid.UUID) -> list[tuple[str, int]]:
    async with platform.db.project_tx(project_id, ProjectContext(None, "system")) as conn:
        cur = await conn.execute("SELECT id::text, items_added FROM imports ORDER BY created_at")
        return [(str(r[0]), int(r[1])) for r in await cur.fetchall()]


def _write_jsonl(path: Path, n: int, tag: str) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {"text": f"{tag} item {i} " + "lorem ipsum dolor " * 4, "metadata": {"n": i}}
                )
                + "\n"
            )
    return path


@pytest.fixture
async def team(platform: Platform, server: ServerThread) -> SdkTeam:
    return await build_sdk_team(platform, server)


@pytest.mark.slow
async def test_sigkill_mid_import_leaves_nothing_then_rerun_completes(
    team: SdkTeam, platform: Platform, settings: Settings, tmp_path: Path
) -> None:
    pid = str(team.project_id)
    env = _env(settings)
    # an earlier import that completes (attributed to the data owner)
    small = _write_jsonl(tmp_path / "small.jsonl", 1000, "earlier")
    done = run(
        ["import", "--project", pid, "--as", team.users["data_owner"].email, str(small)],
        env,
        timeout=120,
    )
    assert done.returncode == 0, done.output
    assert "1000" in done.stdout and "small.jsonl" in done.stdout
    earlier = await _imports(platform, team.project_id)
    assert [n for _, n in earlier] == [1000]
    assert await _counts(platform, team.project_id) == {earlier[0][0]: 1000}

    big = _write_jsonl(tmp_path / "big.jsonl", BIG_LINES, "big")
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: ASYNC220 - the process is polled, never waited on
        [LABELVAULT, "import", "--project", pid, str(big)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        processed = 0
        assert proc.stdout is not None
        for line in proc.stdout:  # plain progress lines (not a terminal)
            if "rows processed" in line:
                processed = int(line.split(":")[1].split()[0])
                if processed >= 4000 and time.monotonic() - started >= 1.0:
                    break
        assert proc.poll() is None, "the import finished before it could be killed"
        assert processed < BIG_LINES
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # none (or all) of the killed import's items; the earlier import untouched
    counts = await _counts(platform, team.project_id)
    assert counts[earlier[0][0]] == 1000
    others = sum(n for k, n in counts.items() if k != earlier[0][0])
    assert others in (0, BIG_LINES), counts
    assert len(await _imports(platform, team.project_id)) in (1, 2)
    if others == 0:
        assert await _imports(platform, team.project_id) == earlier

    # rerun to completion
    again = run(["import", "--project", pid, str(big)], env, timeout=600)
    assert again.returncode == 0, again.output
    counts = await _counts(platform, team.project_id)
    assert counts[earlier[0][0]] == 1000
    assert sum(counts.values()) == 1000 + BIG_LINES


async def test_local_import_reports_and_fails_with_one_line(
    team: SdkTeam, platform: Platform, settings: Settings, db_target: DatabaseTarget, tmp_path: Path
) -> None:
    pid = str(team.project_id)
    env = _env(settings)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok one"}\n{"text": 5}\nnot json at all\n{"text": "ok two"}\n')
    good = tmp_path / "good.txt"
    good.write_text("alpha\nbeta\n")
    missing = str(tmp_path / "nope.jsonl")
    results = {
        "reject": run(["import", "--project", pid, str(good), str(bad)], env),
        "missing": run(["import", "--project", pid, missing], env),
        "project": run(["import", "--project", str(uuid.uuid4()), str(good)], env),
        "onerr": run(["import", "--project", pid, "--on-error", "maybe", str(good)], env),
    }
    line = results["reject"].error_line()
    assert "bad.jsonl" in line and "line 2" in line and "ok one" not in line
    assert "good.txt" in results["reject"].stdout  # the file before it was imported
    assert "nope.jsonl" in results["missing"].error_line()
    assert "not found" in results["project"].error_line()
    assert "--on-error" in results["onerr"].error_line()
    counts = await _counts(platform, team.project_id)
    assert sum(counts.values()) == 2  # good.txt only: bad.jsonl left nothing behind

    skipped = run(["import", "--project", pid, "--on-error", "skip", str(bad)], env)
    assert skipped.returncode == 0, skipped.output
    assert "2: " in skipped.stdout and "3: " in skipped.stdout  # first errors by line
    assert sum((await _counts(platform, team.project_id)).values()) == 4
    # the command chained the audit events it wrote before it exited (no server knew of them)
    with psycopg.connect(db_target.owner_dsn) as conn:
        schema = project_schema(team.project_id)
        pending = conn.execute(f"SELECT count(*) FROM {schema}.audit_pending").fetchone()
        imports = conn.execute(
            f"SELECT count(*) FROM {schema}.audit_events "
            "WHERE convert_from(body, 'UTF8')::jsonb ->> 'action' = 'item.import'"
        ).fetchone()
    assert pending == (0,)
    assert imports is not None and imports[0] >= 2


async def test_remote_import_and_commands(
    team: SdkTeam, server: ServerThread, tmp_path: Path
) -> None:
    pid = str(team.project_id)
    token_file = tmp_path / "owner.token"
    token_file.write_text(team.tokens["data_owner"] + "\n")
    token_file.chmod(0o600)
    data = _write_jsonl(tmp_path / "remote.jsonl", 50, "remote")
    env = cli_env()
    env.pop("LABELVAULT_TOKEN", None)
    common = ["--url", server.url, "--ca-file", str(server.ca_file)]
    r = run(["import", "--project", pid, *common, "--token-file", str(token_file), str(data)], env)
    assert r.returncode == 0, r.output
    assert "remote.jsonl" in r.stdout and "50" in r.stdout

    # the token file must not be world-readable
    token_file.chmod(0o644)
    r = run(["import", "--project", pid, *common, "--token-file", str(token_file), str(data)], env)
    assert "readable by every user" in r.error_line()
    assert team.tokens["data_owner"] not in r.output

    # annotator through LABELVAULT_TOKEN
    a_env = {**env, "LABELVAULT_TOKEN": team.tokens["annotator"]}
    r = run(["remote", "next-task", "--project", pid, *common], a_env)
    assert r.returncode == 0, r.output
    task = json.loads(r.stdout)
    assert task["text"].startswith("remote item")
    r = run(
        ["remote", "submit", task["task_id"], "--project", pid, "--label", "spam", *common], a_env
    )
    assert r.returncode == 0, r.output
    assert json.loads(r.stdout)["version"] == 1
    r = run(
        ["remote", "submit", task["task_id"], "--project", pid, "--label", "nope", *common], a_env
    )
    assert "labels" in r.error_line() and "[422]" in r.error_line()
    r = run(["remote", "aggregates", "--project", pid, *common], a_env)
    assert "[403]" in r.error_line()
    m_env = {**env, "LABELVAULT_TOKEN": team.tokens["manager"]}
    r = run(["remote", "aggregates", "--project", pid, *common], m_env)
    assert r.returncode == 0, r.output
    assert json.loads(r.stdout)["items"] == 50
    assert team.tokens["manager"] not in r.output
    # no CA: the self-signed certificate is refused, in one line
    r = run(["remote", "aggregates", "--project", pid, "--url", server.url], m_env)
    assert r.error_line().startswith("error: ")
