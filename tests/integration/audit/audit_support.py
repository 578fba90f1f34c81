"""Helpers of the audit integration tests: fresh projects with a trail, tampering as a DBA."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import Any

import psycopg
from tests.support.platform import SYSTEM, make_org, make_project

from labelvault.audit.checkpointer import checkpoint_chain, project_chain_id
from labelvault.audit.dbverify import DatabaseReport, verify_database
from labelvault.audit.record import audit_project
from labelvault.audit.sealer import seal_project
from labelvault.audit.signing import load_signer
from labelvault.db.context import ProjectContext
from labelvault.db.names import project_schema
from labelvault.platform import Platform

SYSTEM_CTX = ProjectContext(None, "system")


async def new_project(platform: Platform) -> uuid.UUID:
    org = await make_org(platform)
    return (await make_project(platform, org.id)).id


async def append_events(
    platform: Platform, project_id: uuid.UUID, n: int, *, prefix: str = "item"
) -> list[int]:
    """Append ``n`` events in one transaction, chain them, and return their sequence numbers."""
    async with platform.db.project_tx(project_id, SYSTEM_CTX) as conn:
        cur = await conn.execute(f"SELECT coalesce(max(seq), 0) FROM {table(project_id)}")
        row = await cur.fetchone()
        before = int(row[0]) if row else 0
        for i in range(n):
            await audit_project(
                conn,
                SYSTEM,
                f"{prefix}.read",
                resource_type="item",
                resource_id=f"item-{i}",
                project_id=project_id,
                details={"i": i},
            )
    await seal_project(platform.db, project_id)
    return list(range(before + 1, before + n + 1))


async def checkpoint(platform: Platform, project_id: uuid.UUID) -> None:
    signer = await load_signer(platform)
    await checkpoint_chain(platform, project_chain_id(project_id), signer)


def table(project_id: uuid.UUID) -> str:
    return f"{project_schema(project_id)}.audit_events"


def as_dba(dsn: str, statements: list[tuple[str, list[Any]]]) -> None:
    """Run statements as the superuser with every trigger off (what a rogue DBA could do)."""
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.execute("SET session_replication_role = replica")
        for sql, params in statements:
            conn.execute(sql, params)  # type: ignore[arg-type]
        conn.commit()


async def verify(dsn: str, project_id: uuid.UUID, key: str, **kw: Any) -> DatabaseReport:
    return await asyncio.to_thread(
        verify_database, dsn, project=project_id, public_keys=[key], **kw
    )


async def run_cli(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
    """Run the real ``labelvault`` executable (off the event loop)."""
    return await asyncio.to_thread(subprocess.run, cmd, capture_output=True, timeout=120, **kw)
