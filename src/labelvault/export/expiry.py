"""Export bundles are kept only as long as they are needed.

A built bundle waits ``export_retention_hours`` (``expires_at``) for its download. The sweep,
per project in the platform's own context:

1. marks each ready export past ``expires_at`` ``expired`` (its link dies with it), audited as
   ``export.expired``, in one transaction;
2. deletes the bundles that no export needs any more: those just expired, and those that
   downloads, failures and earlier sweeps left behind when their deletion failed (the store
   was away). ``blob_id`` is cleared once the bundle is gone, so each is deleted once.

A downloaded bundle is deleted by its download as soon as the response ends; the sweep only
takes those older than ``DOWNLOAD_GRACE`` (a slow download may still be reading its bundle).
The primary server process runs :func:`run_sweeper` (hourly); ``labelvault export sweep`` runs one
sweep by hand.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labelvault.audit.record import audit_project
from labelvault.db.context import ControlContext
from labelvault.db.names import project_of_schema
from labelvault.export.build import SYSTEM
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import LabelVaultError
from labelvault.kernel.periodic import every, jitter
from labelvault.logs import get_logger
from labelvault.storage import BlobNotFoundError
from labelvault.tenancy.service import list_projects

if TYPE_CHECKING:
    from labelvault.platform import Platform

log = get_logger(__name__)
SWEEPER = Actor.system("export-sweeper")
# hourly: retention is counted in hours, and each sweep opens the pool of every project that
# has ever exported
SWEEP_SECONDS = 3600.0
DOWNLOAD_GRACE = "1 day"
# final states whose bundle nothing needs; a building export's blob belongs to its build
_DONE = ("expired", "downloaded", "failed", "rejected")


@dataclass(frozen=True, slots=True)
class SweepResult:
    project_id: uuid.UUID
    expired: int  # exports that expired in this sweep
    bundles_deleted: int
    bundles_left: int  # the store could not delete them now: the next sweep tries again
    error: str | None = None  # the sweep of this project failed (the type of the error)


async def sweep_project(platform: Platform, project_id: uuid.UUID) -> SweepResult:
    """Expire the project's ready exports past their time, then delete unneeded bundles."""
    hours = platform.settings.export_retention_hours
    # nothing is marked for the sealer unless an event was written (most sweeps write none)
    async with platform.db.project_tx(project_id, SYSTEM, mark_dirty=False) as conn:
        # exports that were ready before expiry existed get their full time from now
        await conn.execute(
            "UPDATE exports SET expires_at = now() + make_interval(hours => %s) "
            "WHERE state = 'ready' AND expires_at IS NULL",
            [hours],
        )
        cur = await conn.execute(
            "UPDATE exports SET state = 'expired', download_token_hash = NULL, "
            "download_expires_at = NULL, updated_at = now() "
            "WHERE state = 'ready' AND expires_at <= now() RETURNING id, expires_at"
        )
        expired = await cur.fetchall()
        for export_id, expires_at in expired:
            await audit_project(
                conn,
                SWEEPER,
                "export.expired",
                resource_type="export",
                resource_id=export_id,
                project_id=project_id,
                details={"expires_at": expires_at.isoformat()},
            )
    if expired:
        platform.db.mark_dirty(project_id)
    # each bundle is deleted under its row's lock, and blob_id cleared in that transaction: a
    # key rotation re-encrypting the same bundle (it locks the row too) cannot write it back
    # after the delete; rows locked by someone else wait for the next sweep
    async with platform.db.project_tx(project_id, SYSTEM, mark_dirty=False) as conn:
        cur = await conn.execute(
            "SELECT id, blob_id FROM exports WHERE blob_id IS NOT NULL AND state = ANY(%s) "
            "AND (state <> 'downloaded' OR downloaded_at < now() - %s::interval) "
            "FOR UPDATE SKIP LOCKED",
            [list(_DONE), DOWNLOAD_GRACE],
        )
        leftovers = await cur.fetchall()
        gone: list[uuid.UUID] = []
        for export_id, blob_id in leftovers:
            if await asyncio.to_thread(_delete, platform, project_id, blob_id):
                gone.append(export_id)
        if gone:
            await conn.execute("UPDATE exports SET blob_id = NULL WHERE id = ANY(%s)", [gone])
    return SweepResult(project_id, len(expired), len(gone), len(leftovers) - len(gone))


def _delete(platform: Platform, project_id: uuid.UUID, blob_id: str) -> bool:
    """True once the bundle is gone (deleted now, or already)."""
    try:
        platform.blobs.delete(project_id, blob_id)
    except BlobNotFoundError:
        return True
    except LabelVaultError as exc:
        log.warning("export bundle not deleted", project_id=str(project_id), error=exc.code)
        return False
    return True


# projects whose exports table has ever held a row: a table of zero blocks holds none, not
# even an uncommitted one (an insert extends the file at once); read from the catalog, in one
# control-plane statement, without opening any project's pool
_EXPORTING = (
    "SELECT c.relnamespace::regnamespace::text FROM pg_class c "
    "WHERE c.relname = 'exports' AND c.relkind = 'r' "
    "AND starts_with(c.relnamespace::regnamespace::text, 'p_') AND pg_relation_size(c.oid) > 0"
)


async def _projects_with_exports(platform: Platform) -> set[uuid.UUID] | None:
    """The projects that have ever had an export, or None (sweep them all) if unreadable."""
    try:
        async with platform.db.control_tx(ControlContext.system_context()) as conn:
            # each size takes a share lock on its table: never queue behind a migration's
            await conn.execute("SET LOCAL lock_timeout = '5s'")
            cur = await conn.execute(_EXPORTING)
            schemas = {str(row[0]) for row in await cur.fetchall()}
    except Exception as exc:
        log.warning("export tables unreadable; sweeping every project", error=type(exc).__name__)
        return None
    return {p for s in schemas if (p := project_of_schema(s)) is not None}


async def sweep_all(
    platform: Platform, stop_event: asyncio.Event | None = None
) -> list[SweepResult]:
    """Sweep every active project that has ever had an export (until ``stop_event`` is set);
    one that fails is logged, reported with its ``error``, and the others go on."""
    results: list[SweepResult] = []
    exporting = await _projects_with_exports(platform)
    for project in await list_projects(platform.db, SWEEPER):
        if stop_event is not None and stop_event.is_set():
            break
        if exporting is not None and project.id not in exporting:
            continue  # never exported: nothing to expire, no pool to open
        try:
            results.append(await sweep_project(platform, project.id))
        except Exception as exc:
            log.error(
                "export sweep failed", project_id=str(project.id), error_type=type(exc).__name__
            )
            results.append(SweepResult(project.id, 0, 0, 0, error=type(exc).__name__))
    return results


async def run_sweeper(
    platform: Platform, stop_event: asyncio.Event, interval: float = SWEEP_SECONDS
) -> None:
    """Sweep every ``interval`` seconds until ``stop_event`` is set (the primary server). The
    first sweep comes half to one interval after the start (servers restarted together spread
    out; a bundle waits hours anyway)."""
    await every(
        interval,
        stop_event,
        lambda: sweep_all(platform, stop_event),
        first=jitter(interval / 2, interval),
        on_error=lambda exc: log.error("export sweep failed", error_type=type(exc).__name__),
    )
