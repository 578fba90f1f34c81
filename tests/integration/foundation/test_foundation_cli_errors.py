"""Bad input and a bad environment: one clear ``error:`` line, a non-zero exit, nothing created.

Every command runs as the real ``labelvault`` in a subprocess, all of them at once (against the
session's database where they need one); the catalog and control plane are counted through the
owner DSN before and after.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from tests.integration.foundation.foundation_cli import Result, cli_env, run, run_forked
from tests.support.platform import free_port, make_org, make_project

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.platform import Platform
from labelvault.settings import Settings

SECRET = "s3cr3t-pw"


def _counts(db_target: DatabaseTarget) -> dict[str, int]:
    queries = {
        "schemas": r"SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'p\_%'",
        "roles": r"SELECT count(*) FROM pg_roles WHERE rolname LIKE 'lv\_p\_%'",
        "projects": "SELECT count(*) FROM lv_control.projects",
        "credentials": "SELECT count(*) FROM lv_control.project_credentials",
        "organizations": "SELECT count(*) FROM lv_control.organizations",
    }
    with psycopg.connect(db_target.owner_dsn, autocommit=True) as conn:
        return {k: conn.execute(q).fetchone()[0] for k, q in queries.items()}  # type: ignore[index]


@dataclass
class Outcomes:
    results: dict[str, Result]
    before: dict[str, int]
    after: dict[str, int]
    scratch: Path


# name -> what the single stderr line must contain
EXPECTED = {
    "project_empty": "name must not be empty",
    "project_blank": "name must not be empty",
    "project_101_chars": "name must be at most 100 characters",
    "project_control_char": "name must not contain control characters",
    "project_newline": "name must not contain control characters",
    "project_escape_sequence": "name must not contain control characters",
    "project_duplicate_other_case": "already exists in this organization",
    "project_unknown_org": "organization not found",
    "org_duplicate_other_case": "already exists",
    "org_blank": "name must not be empty",
    "unreachable_database": "cannot connect to the database",
    "malformed_database_url": "the database URL is malformed",
    "malformed_database_url_query": "the database URL is malformed",
    "unreadable_database_url_file": "cannot read the file given for database_url",
    "unreadable_local_kek_file": "cannot read the file given for local_kek",
    "data_dir_beneath_a_file": "Not a directory",
    "port_in_use": "already in use",
    "invalid_port_setting": "invalid setting port",
}


@pytest.fixture(scope="module")
async def outcomes(
    platform: Platform, db_target: DatabaseTarget, settings: Settings
) -> AsyncIterator[Outcomes]:
    org = await make_org(platform)
    taken = f"Alpha-{uuid.uuid4().hex[:8]}"
    await make_project(platform, org.id, name=taken)
    await make_project(platform, org.id, name="x" * 100)  # the limit itself is accepted

    scratch = Path(tempfile.mkdtemp(prefix="lv-cli-errors-"))
    (scratch / "afile").write_text("not a directory\n")
    session = ["--data-dir", str(settings.data_dir)]
    db_env = cli_env()
    alone = cli_env(keep_database_url=False)

    def project(name: str, org_ref: str = str(org.id)) -> list[str]:
        return ["project", "create", "--org", org_ref, "--name", name, *session]

    def with_env(data: str, **extra: str) -> dict[str, str]:
        return {**alone, "LABELVAULT_DATA_DIR": str(scratch / data), **extra}

    holder = socket.socket()
    holder.bind(("127.0.0.1", free_port()))
    holder.listen()
    held_port = holder.getsockname()[1]
    cases = {
        "project_empty": (project(""), db_env),
        "project_blank": (project("   \t "), db_env),
        "project_101_chars": (project("y" * 101), db_env),
        "project_control_char": (project("bad\x07name"), db_env),
        "project_newline": (project("two\nlines"), db_env),
        "project_escape_sequence": (project("red\x1b[31mtext"), db_env),
        "project_duplicate_other_case": (project(taken.upper(), org.name.upper()), db_env),
        "project_unknown_org": (project("fine", f"no-such-org-{uuid.uuid4().hex}"), db_env),
        "org_duplicate_other_case": (["org", "create", org.name.upper(), *session], db_env),
        "org_blank": (["org", "create", " ", *session], db_env),
        "unreachable_database": (
            ["migrate"],
            with_env("u", LABELVAULT_DATABASE_URL=f"postgresql://lv:{SECRET}@127.0.0.1:1/x"),
        ),
        "malformed_database_url": (
            ["migrate"],
            with_env("m", LABELVAULT_DATABASE_URL=f"postgresql://lv:{SECRET}@[::1/x"),
        ),
        "malformed_database_url_query": (
            ["migrate"],
            with_env("q", LABELVAULT_DATABASE_URL=f"postgresql://lv:{SECRET}@h/x?bogus=1"),
        ),
        "unreadable_database_url_file": (
            ["migrate"],
            with_env("f", LABELVAULT_DATABASE_URL_FILE=str(scratch / "missing-url")),
        ),
        "unreadable_local_kek_file": (
            ["migrate"],
            with_env("k", LABELVAULT_LOCAL_KEK_FILE=str(scratch)),  # a directory
        ),
        "data_dir_beneath_a_file": (
            ["migrate", "--data-dir", str(scratch / "afile" / "data")],
            alone,
        ),
        "port_in_use": (["serve"], with_env("port", LABELVAULT_PORT=str(held_port))),
        "invalid_port_setting": (["serve"], with_env("port2", LABELVAULT_PORT="notaport")),
    }
    assert cases.keys() == EXPECTED.keys()
    try:
        before = _counts(db_target)
        results = await asyncio.to_thread(run_forked, cases)
        after = _counts(db_target)
    finally:
        holder.close()
    try:
        yield Outcomes(results, before, after, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_one_clear_error_line(outcomes: Outcomes, case: str) -> None:
    result = outcomes.results[case]
    line = result.error_line()
    assert EXPECTED[case] in line, line
    assert "Traceback" not in result.output
    assert result.stdout == "", result.stdout
    assert SECRET not in result.output


def test_nothing_was_half_created(outcomes: Outcomes) -> None:
    assert outcomes.after == outcomes.before
    scratch = outcomes.scratch
    # environment failures happen before anything is made on disk either
    assert not (scratch / "afile").is_dir()
    for data in ("u", "m", "q", "f", "k", "port", "port2"):
        assert not (scratch / data / "pg").exists(), data
        assert not (scratch / data / "secrets").exists(), data


def test_unreachable_database_names_no_password(outcomes: Outcomes) -> None:
    line = outcomes.results["unreachable_database"].error_line()
    assert line.startswith("error: cannot connect to the database: ")
    assert "127.0.0.1" in line  # says where it tried, not with what
    assert SECRET not in line


def test_port_in_use_names_the_port(outcomes: Outcomes) -> None:
    line = outcomes.results["port_in_use"].error_line()
    assert line.startswith("error: port ") and line.endswith("is already in use")


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root")
def test_data_dir_without_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    try:
        result = run(
            ["migrate", "--data-dir", str(locked / "data")], cli_env(keep_database_url=False)
        )
    finally:
        locked.chmod(0o700)
    line = result.error_line()
    assert "permission denied" in line
    assert not (locked / "data").exists()
