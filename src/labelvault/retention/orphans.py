"""Blobs that no row refers to are deleted: what a crash left in storage does not stay for ever.

An image import writes each image's encrypted blob before its transaction commits. When the
import dies before the commit (SIGKILL, a lost database connection, power), the transaction
rolls back and nothing is visible, but the blobs it had written remain: ciphertext nobody can
reach, which a retention policy or a deletion request still counts as the customer's data. A
put that crashed half-way leaves a temporary file (local store) or a pending multipart upload
(S3) the same way.

The reconciler, per active project, in the platform's own context:

1. lists the project's blobs, each with the time it was written;
2. only then, holding the project's settings row ``FOR SHARE``, reads in one snapshot every
   blob id the project's rows refer to (``items.blob_id``, ``exports.blob_id`` in any state),
   ordered like the listing. An import holds that row ``FOR UPDATE`` from before its first blob
   to its commit: while one runs, nothing is deleted in this project this time;
3. records the orphans, the listed blobs that no row refers to (asked again by id) and that
   were written before the cutoff (:data:`ORPHAN_GRACE` ago), as one ``blob.orphan_delete``
   event in the project's trail (the count, the ids that fit in the event and the SHA-256 of
   the whole sorted list), then deletes them;
4. clears the unfinished writes started before the cutoff;
5. reports the items whose image is not in the store (each asked for again after the
   snapshot: an item that committed meanwhile had its image stored before it committed), as
   an error in the log and in the command's exit status: lost data is an incident.

Export bundles are safe because a build records its bundle's id before writing the bundle, and
key rotation rewrites a blob under its own id. The primary server runs :func:`run_reconciler`
daily; ``labelvault storage reconcile`` runs it by hand (``--dry-run`` lists without deleting).
One run at a time across every host (an advisory lock): a server whose daily run finds another
in progress skips it, and the command refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncConnection, AsyncServerCursor

from labelvault.audit.record import audit_project
from labelvault.db.context import ProjectContext
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import LabelVaultError
from labelvault.kernel.periodic import every, jitter
from labelvault.logs import get_logger
from labelvault.storage import BlobNotFoundError, BlobStore
from labelvault.storage.base import BlobInfo
from labelvault.tenancy.service import list_projects

if TYPE_CHECKING:
    from labelvault.platform import Platform

log = get_logger(__name__)
RECONCILER = Actor.system("blob-reconciler")
SYSTEM = ProjectContext(None, "system")
ORPHAN_GRACE = dt.timedelta(days=1)
RECONCILE_SECONDS = 24 * 3600.0
MISSING_CHECKS = 1000
RECONCILE_LOCK_KEY = 0x4C56_4252  # "LVBR": one reconciliation at a time, across hosts
# the audit event names the blob ids that fit in one of its text fields, and the SHA-256 of
# the whole list (sorted, one id per line), so a list kept elsewhere can be checked against it
EVENT_ID_CHARS = 512
# every blob id a row of the project refers to, in the listing's order (bytes: ids are ASCII),
# and whether an item refers to it (an item's image must exist; an export's bundle may be
# gone once downloaded, or not written yet while it builds)
_REFERENCES = (
    'SELECT b, bool_or(item) FROM (SELECT blob_id COLLATE "C" AS b, true AS item FROM items '
    'WHERE blob_id IS NOT NULL UNION ALL SELECT blob_id COLLATE "C", false FROM exports '
    "WHERE blob_id IS NOT NULL) r GROUP BY b ORDER BY b"
)
_STILL_REFERENCED = (
    "SELECT blob_id FROM items WHERE blob_id = ANY(%s) "
    "UNION SELECT blob_id FROM exports WHERE blob_id = ANY(%s)"
)


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    project_id: uuid.UUID
    blobs: int  # blobs listed
    orphans: list[str] = field(default_factory=list)  # unreferenced and older than the cutoff
    deleted: int = 0
    left: int = 0  # the store could not delete them now: the next run tries again
    incomplete_cleared: int = 0
    # item images that are not in the store (checked one by one, at most MISSING_CHECKS)
    missing: list[str] = field(default_factory=list)
    missing_unchecked: int = 0  # more items whose image was not listed, beyond the checks
    import_running: bool = False  # an import was running: no orphan was deleted this time
    error: str | None = None  # the run for this project failed (the type of the error)


@dataclass
class Comparison:
    unreferenced: list[BlobInfo] = field(default_factory=list)  # stored, no row refers to it
    unlisted_items: list[str] = field(default_factory=list)  # an item refers to it, not stored
    unlisted_total: int = 0  # all of those (the list keeps only the first ``keep``)


async def compare(
    listed: Iterable[BlobInfo],
    references: AsyncIterable[tuple[str, bool]],
    keep: int = MISSING_CHECKS,
) -> Comparison:
    """Merge the store's listing with the rows' references (``(blob id, an item's?)``), both
    sorted in the same (byte) order; the references stream past (a project may refer to
    millions of blobs)."""
    out = Comparison()

    def unlisted(ref: tuple[str, bool]) -> None:
        if ref[1]:
            out.unlisted_total += 1
            if len(out.unlisted_items) < keep:
                out.unlisted_items.append(ref[0])

    refs = aiter(references)
    ref = await anext(refs, None)
    for blob in listed:
        while ref is not None and ref[0] < blob.blob_id:
            unlisted(ref)
            ref = await anext(refs, None)
        if ref is not None and ref[0] == blob.blob_id:
            ref = await anext(refs, None)
        else:
            out.unreferenced.append(blob)
    while ref is not None:
        unlisted(ref)
        ref = await anext(refs, None)
    return out


async def _rows(cursor: AsyncServerCursor[Any]) -> AsyncIterator[tuple[str, bool]]:
    async for blob_id, of_item in cursor:
        yield str(blob_id), bool(of_item)


async def reconcile_project(
    platform: Platform,
    project_id: uuid.UUID,
    *,
    cutoff: dt.datetime | None = None,
    dry_run: bool = False,
) -> ReconcileResult:
    """Delete the project's blobs written before ``cutoff`` (default: :data:`ORPHAN_GRACE` ago)
    that no row refers to, and the incomplete writes started before it."""
    cutoff = cutoff or dt.datetime.now(dt.UTC) - ORPHAN_GRACE
    store = platform.blobs
    listed = await asyncio.to_thread(lambda: list(store.list_blobs(project_id)))
    async with platform.db.project_tx(project_id, SYSTEM, mark_dirty=False) as conn:
        importing = not await _no_import_running(conn)
        async with conn.cursor(name="lv_blob_references") as cur:
            cur.itersize = 10_000
            await cur.execute(_REFERENCES)
            found = await compare(listed, _rows(cur))
        orphans = [b.blob_id for b in found.unreferenced if b.written_at < cutoff]
        if importing:
            orphans = []  # the import's blobs may be old and not yet referenced: next time
        if orphans:  # asked again by id: a deletion never rests on the merge's order alone
            again = await conn.execute(_STILL_REFERENCED, [orphans, orphans])
            still = {row[0] for row in await again.fetchall()}
            if still:
                log.error(
                    "blob references changed or came out of order; those blobs are kept",
                    project_id=str(project_id),
                    kept=len(still),
                )
                orphans = [b for b in orphans if b not in still]
    # an item committed after the listing began has its image stored by now: asked again
    checked = found.unlisted_items
    missing = await asyncio.to_thread(
        lambda: [b for b in checked if not store.exists(project_id, b)]
    )
    unchecked = found.unlisted_total - len(checked)
    if missing:
        log.error(
            "item images missing from the blob store",
            project_id=str(project_id),
            missing=len(missing),
            unchecked=unchecked,
            first=missing[0],
        )
    result = ReconcileResult(
        project_id,
        len(listed),
        orphans,
        missing=missing,
        missing_unchecked=unchecked,
        import_running=importing,
    )
    if dry_run:
        return result
    deleted: list[str] = []
    if orphans:  # recorded first: no blob is deleted without its record
        async with platform.db.project_tx(project_id, SYSTEM) as conn:
            await audit_project(
                conn,
                RECONCILER,
                "blob.orphan_delete",
                resource_type="project",
                resource_id=project_id,
                project_id=project_id,
                details=_event_details(orphans, cutoff),
            )
        deleted = await asyncio.to_thread(_delete_all, store, project_id, orphans)
    cleared = 0
    try:
        cleared = await asyncio.to_thread(store.clear_incomplete, project_id, cutoff)
    except LabelVaultError as exc:  # the store away, or a permission missing: next time
        log.warning("unfinished writes not cleared", project_id=str(project_id), error=exc.code)
    if cleared:
        log.info("unfinished writes cleared", project_id=str(project_id), count=cleared)
    return dataclasses.replace(
        result,
        deleted=len(deleted),
        left=len(orphans) - len(deleted),
        incomplete_cleared=cleared,
    )


async def _no_import_running(conn: AsyncConnection[Any]) -> bool:
    """An import holds the project's settings row (``FOR UPDATE``) from before its first blob
    to its commit; taking it ``FOR SHARE`` until the references are read fails while one runs,
    and makes one that starts now wait (its blobs are then younger than the listing)."""
    try:
        async with conn.transaction():  # a savepoint: the refusal leaves the rest usable
            await conn.execute("SELECT 1 FROM settings FOR SHARE NOWAIT")
    except psycopg.errors.LockNotAvailable:
        return False
    return True


def _event_details(orphans: list[str], cutoff: dt.datetime) -> dict[str, str | int | None]:
    named: list[str] = []
    for blob_id in sorted(orphans):
        if len(" ".join([*named, blob_id])) > EVENT_ID_CHARS:
            break
        named.append(blob_id)
    return {
        "orphans": len(orphans),
        "blobs": " ".join(named) or None,
        "blobs_not_named": len(orphans) - len(named),
        "blobs_sha256": hashlib.sha256("\n".join(sorted(orphans)).encode()).hexdigest(),
        "written_before": cutoff.isoformat(),
    }


def _delete_all(store: BlobStore, project_id: uuid.UUID, blob_ids: list[str]) -> list[str]:
    """The ids that are gone (deleted now, or already); a failure is logged and left."""
    gone = []
    for blob_id in blob_ids:
        try:
            store.delete(project_id, blob_id)
        except BlobNotFoundError:
            pass
        except LabelVaultError as exc:
            log.warning("orphan blob not deleted", project_id=str(project_id), error=exc.code)
            continue
        gone.append(blob_id)
    return gone


async def reconcile_all(
    platform: Platform,
    stop_event: asyncio.Event | None = None,
    *,
    cutoff: dt.datetime | None = None,
    dry_run: bool = False,
) -> list[ReconcileResult] | None:
    """Reconcile every active project (until ``stop_event`` is set); one that fails is logged,
    reported with its ``error``, and the others go on. None: another server or command is
    reconciling now (one run at a time across every host, by an advisory lock)."""
    async with platform.db.control_pool.connection() as lock:
        cur = await lock.execute("SELECT pg_try_advisory_lock(%s)", [RECONCILE_LOCK_KEY])
        row = await cur.fetchone()
        await lock.commit()  # a session lock: no transaction stays open while it is held
        if row is None or not row[0]:
            log.info("blob reconciliation already running elsewhere; skipped")
            return None
        try:
            return await _reconcile_each(platform, stop_event, cutoff=cutoff, dry_run=dry_run)
        finally:
            with contextlib.suppress(psycopg.Error):  # a lost connection released it anyway
                await lock.execute("SELECT pg_advisory_unlock(%s)", [RECONCILE_LOCK_KEY])
                await lock.commit()


async def _reconcile_each(
    platform: Platform,
    stop_event: asyncio.Event | None,
    *,
    cutoff: dt.datetime | None,
    dry_run: bool,
) -> list[ReconcileResult]:
    results: list[ReconcileResult] = []
    for project in await list_projects(platform.db, RECONCILER):
        if stop_event is not None and stop_event.is_set():
            break
        try:
            results.append(
                await reconcile_project(platform, project.id, cutoff=cutoff, dry_run=dry_run)
            )
        except Exception as exc:
            log.error(
                "blob reconciliation failed",
                project_id=str(project.id),
                error_type=type(exc).__name__,
            )
            results.append(ReconcileResult(project.id, 0, error=type(exc).__name__))
    return results


async def run_reconciler(
    platform: Platform, stop_event: asyncio.Event, interval: float = RECONCILE_SECONDS
) -> None:
    """Reconcile every ``interval`` seconds until ``stop_event`` is set (the primary server);
    the first run comes one to two hours after the start."""
    await every(
        interval,
        stop_event,
        lambda: reconcile_all(platform, stop_event),
        first=jitter(3600, 7200),
        on_error=lambda exc: log.error("blob reconciliation failed", error_type=type(exc).__name__),
    )
