"""Chaining committed events: moves ``audit_pending`` rows into the hash chain, in order.

Appends are lock-free (``audit_append`` only inserts into ``audit_pending`` in the action's
transaction); this module runs ``audit_seal()`` for the chains a server has written to, a few
times a second, and on demand before anything reads or checkpoints a chain. Any server (or the
CLI) may seal any chain: the chain's advisory lock serialises sealers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from labelvault.db.context import ControlContext, ProjectContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.logs import get_logger

SEAL_INTERVAL_S = 0.2
log = get_logger(__name__)


async def seal_control(db: RuntimeDatabase) -> int:
    total = 0
    while True:
        async with db.control_tx(ControlContext.system_context()) as conn:
            cur = await conn.execute("SELECT lv_control.audit_seal()")
            row = await cur.fetchone()
        sealed = int(row[0]) if row else 0
        total += sealed
        if sealed < 5000:
            return total


async def seal_project(db: RuntimeDatabase, project_id: uuid.UUID) -> int:
    total = 0
    while True:
        async with db.project_tx(
            project_id, ProjectContext(None, "system"), mark_dirty=False
        ) as conn:
            cur = await conn.execute("SELECT audit_seal()")
            row = await cur.fetchone()
        sealed = int(row[0]) if row else 0
        total += sealed
        if sealed < 5000:
            return total


async def seal_pending(db: RuntimeDatabase) -> int:
    """Seal the control chain and every project chain this process wrote to since last time."""
    total = await seal_control(db)
    for project_id in db.take_dirty_projects():
        try:
            total += await seal_project(db, project_id)
        except Exception as exc:  # e.g. a project deleted meanwhile; retried if written again
            log.warning("audit_seal_failed", project=str(project_id), error=type(exc).__name__)
    return total


async def run_sealer(
    db: RuntimeDatabase, stop: asyncio.Event, interval: float = SEAL_INTERVAL_S
) -> None:
    """The server's background sealer; seals once more on the way out."""
    while not stop.is_set():
        try:
            await seal_pending(db)
        except Exception as exc:
            log.error("audit_sealer_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
    try:
        await asyncio.wait_for(seal_pending(db), timeout=30)
    except Exception as exc:
        log.error("audit_sealer_final_failed", error=type(exc).__name__)
