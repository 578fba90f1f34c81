"""Exports: request, second-person approval, one-time download links (DESIGN invariant 8).

* A manager or data owner requests an export (format, accepted-only or all annotations). When
  the project requires approval (``export_requires_approval``, on by default) it waits for a
  *different* manager or data owner to approve or reject it — the database refuses an approver
  equal to the requester too; otherwise it is approved at once.
* Approval queues the build job (ids only) in the same step; the job's progress and result are
  in the export row (state, item count, manifest).
* Only the requester may create a download link (a random token, stored as its SHA-256, valid
  ``LINK_MINUTES``) and download, once: the token is consumed atomically with the state change
  to ``downloaded``.

Every step is audited in its own transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg import errors as pg_errors
from psycopg.rows import dict_row

from labelvault.access.scope import ProjectScope
from labelvault.annotation.settings import read_settings
from labelvault.audit.record import audit_project
from labelvault.crypto import DecryptionError
from labelvault.db.runtime import RuntimeDatabase
from labelvault.export.build import manifest_hash
from labelvault.export.job import defer_build
from labelvault.jobs import JobQueue
from labelvault.kernel.errors import (
    ConflictError,
    InvalidInputError,
    LabelVaultError,
    NotFoundError,
    PermissionDeniedError,
)
from labelvault.kernel.ids import parse_id
from labelvault.storage import BlobNotFoundError

FORMATS = ("jsonl", "csv", "parquet", "coco")
LINK_MINUTES = 10
_COLUMNS = (
    "id, requested_by, format, only_accepted, state, approved_by, decided_at, "
    "item_count, manifest, download_expires_at, downloaded_at, error, expires_at, "
    "created_at, updated_at"
)


class GoneError(LabelVaultError):
    """The download link was used or has expired."""

    status = 410
    code = "gone"


def _audit_fields(scope: ProjectScope) -> dict[str, Any]:
    if scope.privileged_reason:
        return {"privileged": True, "reason": scope.privileged_reason}
    return {}


def export_view(row: dict[str, Any]) -> dict[str, Any]:
    manifest = row.get("manifest")
    return {
        "export_id": str(row["id"]),
        "format": row["format"],
        "only_accepted": row["only_accepted"],
        "state": row["state"],
        "requested_by": str(row["requested_by"]),
        "approved_by": str(row["approved_by"]) if row["approved_by"] else None,
        "decided_at": row["decided_at"].isoformat() if row["decided_at"] else None,
        # while building: the records written so far; once ready: the records in the bundle
        "item_count": row["item_count"],
        "manifest": manifest,
        "manifest_sha256": manifest_hash(manifest) if manifest else None,
        "download_expires_at": (
            row["download_expires_at"].isoformat() if row["download_expires_at"] else None
        ),
        "downloaded_at": row["downloaded_at"].isoformat() if row["downloaded_at"] else None,
        # a ready export's bundle is deleted then, downloaded or not
        "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
        "error": row["error"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def request_export(
    db: RuntimeDatabase,
    scope: ProjectScope,
    format: str,
    only_accepted: bool = True,
    *,
    jobs: JobQueue,
) -> dict[str, Any]:
    if format not in FORMATS:
        raise InvalidInputError(f"format must be one of: {', '.join(FORMATS)}", field="format")
    export_id = uuid.uuid4()
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        settings = await read_settings(conn)
        if format == "coco" and (settings.label_schema or {}).get("kind") != "image_boxes":
            raise InvalidInputError("COCO exports are for image_boxes projects", field="format")
        approved = not settings.export_requires_approval
        cur = await conn.cursor(row_factory=dict_row).execute(
            "INSERT INTO exports (id, requested_by, format, only_accepted, state, decided_at) "
            f"VALUES (%s, %s, %s, %s, %s, CASE WHEN %s THEN now() END) RETURNING {_COLUMNS}",
            [
                export_id,
                scope.user_id,
                format,
                only_accepted,
                "approved" if approved else "pending_approval",
                approved,
            ],
        )
        row = await cur.fetchone()
        assert row is not None
        await audit_project(
            conn,
            scope.actor,
            "export.request",
            resource_type="export",
            resource_id=export_id,
            project_id=scope.project_id,
            details={
                "format": format,
                "only_accepted": only_accepted,
                "approval_required": not approved,
            },
            **_audit_fields(scope),
        )
        if approved:  # queued before the commit: a failed queue fails the request
            await defer_build(jobs, scope.project_id, export_id)
    return export_view(row)


async def _locked(conn: Any, export_id: uuid.UUID) -> dict[str, Any]:
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_COLUMNS}, download_token_hash, blob_id, "
        "download_expires_at <= now() AS link_expired, expires_at <= now() AS bundle_expired "
        "FROM exports WHERE id = %s FOR UPDATE",
        [export_id],
    )
    row: dict[str, Any] | None = await cur.fetchone()
    if row is None:
        raise NotFoundError("export not found")
    return row


async def _decide(
    db: RuntimeDatabase,
    scope: ProjectScope,
    export_id: str | uuid.UUID,
    decision: str,
    jobs: JobQueue | None,
) -> dict[str, Any]:
    eid = parse_id(export_id, what="export")
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        row = await _locked(conn, eid)
        if row["requested_by"] == scope.user_id:
            raise PermissionDeniedError(
                f"you requested this export: a second manager or data owner must {decision} it"
            )
        if row["state"] != "pending_approval":
            raise ConflictError(f"this export is {row['state']}, not waiting for approval")
        state = "approved" if decision == "approve" else "rejected"
        try:
            cur = await conn.cursor(row_factory=dict_row).execute(
                "UPDATE exports SET state = %s, approved_by = %s, decided_at = now(), "
                f"updated_at = now() WHERE id = %s RETURNING {_COLUMNS}",
                [state, scope.user_id, eid],
            )
        except pg_errors.CheckViolation:
            raise PermissionDeniedError("the requester of an export cannot approve it") from None
        updated = await cur.fetchone()
        assert updated is not None
        await audit_project(
            conn,
            scope.actor,
            f"export.{decision}",
            resource_type="export",
            resource_id=eid,
            project_id=scope.project_id,
            details={
                "format": row["format"],
                "only_accepted": row["only_accepted"],
                "requested_by": str(row["requested_by"]),
            },
            **_audit_fields(scope),
        )
        if jobs is not None and state == "approved":
            await defer_build(jobs, scope.project_id, eid)
    return export_view(updated)


async def approve_export(
    db: RuntimeDatabase, scope: ProjectScope, export_id: str | uuid.UUID, *, jobs: JobQueue
) -> dict[str, Any]:
    """A second manager or data owner approves: the build is queued."""
    return await _decide(db, scope, export_id, "approve", jobs)


async def reject_export(
    db: RuntimeDatabase, scope: ProjectScope, export_id: str | uuid.UUID
) -> dict[str, Any]:
    return await _decide(db, scope, export_id, "reject", None)


async def list_exports(
    db: RuntimeDatabase, scope: ProjectScope, *, limit: int = 50
) -> list[dict[str, Any]]:
    if not 1 <= limit <= 200:
        raise InvalidInputError("limit must be 1..200", field="limit")
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            f"SELECT {_COLUMNS} FROM exports ORDER BY created_at DESC LIMIT %s", [limit]
        )
        rows = await cur.fetchall()
    return [export_view(r) for r in rows]


async def get_export(
    db: RuntimeDatabase, scope: ProjectScope, export_id: str | uuid.UUID
) -> dict[str, Any]:
    eid = parse_id(export_id, what="export")
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            f"SELECT {_COLUMNS} FROM exports WHERE id = %s", [eid]
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError("export not found")
    return export_view(row)


_Opened = TypeVar("_Opened")
_DAMAGED = "the bundle of this export is missing or damaged; request a new export"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _not_expired(row: dict[str, Any]) -> None:
    """410 for an export whose bundle is past its time (expired, or about to be swept)."""
    if row["state"] == "expired" or (row["state"] == "ready" and row["bundle_expired"]):
        raise GoneError("this export has expired and its bundle is deleted; request a new export")


def _requester_only(scope: ProjectScope, row: dict[str, Any]) -> None:
    if row["requested_by"] != scope.user_id:
        raise PermissionDeniedError("only the person who requested this export can download it")


async def create_download_link(
    db: RuntimeDatabase, scope: ProjectScope, export_id: str | uuid.UUID
) -> dict[str, Any]:
    """A one-time link for the requester, valid ``LINK_MINUTES`` and never past the bundle's
    own expiry (a new link replaces the previous one). Only the token's hash is stored."""
    eid = parse_id(export_id, what="export")
    token = secrets.token_urlsafe(32)
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        row = await _locked(conn, eid)
        _requester_only(scope, row)
        _not_expired(row)
        if row["state"] != "ready":
            raise ConflictError(f"this export is {row['state']}: only a ready export has a link")
        cur = await conn.execute(
            "UPDATE exports SET download_token_hash = %s, updated_at = now(), "
            "download_expires_at = least(now() + make_interval(mins => %s), expires_at) "
            "WHERE id = %s RETURNING download_expires_at",
            [_token_hash(token), LINK_MINUTES, eid],
        )
        expires = await cur.fetchone()
        assert expires is not None
        await audit_project(
            conn,
            scope.actor,
            "export.link",
            resource_type="export",
            resource_id=eid,
            project_id=scope.project_id,
            details={"minutes": LINK_MINUTES},
            **_audit_fields(scope),
        )
    expires_at: dt.datetime = expires[0]
    return {
        "url": f"/api/v1/projects/{scope.project_id}/exports/{eid}/download?token={token}",
        "token": token,
        "expires_at": expires_at.isoformat(),
    }


async def consume_download(
    db: RuntimeDatabase,
    scope: ProjectScope,
    export_id: str | uuid.UUID,
    token: str,
    open_bundle: Callable[[str], Awaitable[_Opened]],
) -> tuple[dict[str, Any], _Opened]:
    """Check the link, open the bundle (``open_bundle(blob_id)``), then use the link up: the
    export becomes ``downloaded`` (audited). Returns the blob id and manifest, and what
    ``open_bundle`` returned. The link is spent only once the bundle has opened: a bundle the
    store cannot give now leaves the link valid; a missing or damaged one fails the export
    (audited) and answers 410."""
    eid = parse_id(export_id, what="export")
    damaged = False
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        row = await _locked(conn, eid)
        _requester_only(scope, row)
        if row["state"] == "downloaded":
            raise GoneError("this export has already been downloaded; request a new export")
        _not_expired(row)
        if row["state"] != "ready":
            raise ConflictError(f"this export is {row['state']}, not ready")
        stored = row["download_token_hash"]
        if not stored or not hmac.compare_digest(stored, _token_hash(token)):
            raise PermissionDeniedError("this download link is not valid")
        if row["link_expired"]:
            raise GoneError("this download link has expired; create a new one")
        try:
            opened = await open_bundle(row["blob_id"])
        except (BlobNotFoundError, DecryptionError):
            damaged = True
        if damaged:
            await conn.execute(
                "UPDATE exports SET state = 'failed', error = %s, download_token_hash = NULL, "
                "download_expires_at = NULL, updated_at = now() WHERE id = %s",
                [_DAMAGED, eid],
            )
            await audit_project(
                conn,
                scope.actor,
                "export.failed",
                outcome="failure",
                resource_type="export",
                resource_id=eid,
                project_id=scope.project_id,
                details={"error": "bundle_unreadable"},
                **_audit_fields(scope),
            )
        else:
            cur = await conn.execute(
                "UPDATE exports SET state = 'downloaded', downloaded_at = now(), "
                "download_token_hash = NULL, download_expires_at = NULL, updated_at = now() "
                "WHERE id = %s AND state = 'ready' AND download_token_hash = %s",
                [eid, stored],
            )
            if cur.rowcount != 1:
                raise GoneError("this download link has already been used")
            manifest = row["manifest"] or {}
            await audit_project(
                conn,
                scope.actor,
                "export.download",
                resource_type="export",
                resource_id=eid,
                project_id=scope.project_id,
                details={
                    "format": row["format"],
                    "records": row["item_count"],
                    "bundle_sha256": (manifest.get("bundle") or {}).get("sha256"),
                    "manifest_sha256": manifest_hash(manifest),
                },
                **_audit_fields(scope),
            )
    if damaged:
        raise GoneError(_DAMAGED)
    return {"blob_id": row["blob_id"], "manifest": manifest, "format": row["format"]}, opened
