"""Building an export bundle: the background job, in the platform's own ("system") context.

The annotations are read in one REPEATABLE READ, READ ONLY transaction through a server-side
cursor (``BUILD_BATCH`` rows at a time), decrypted, written by a streaming format writer and
encrypted on the fly into the project's blob store (``exports`` row ``export_id``): at no point
is the whole bundle, or any plaintext file, anywhere. The SHA-256 of the plaintext bundle, and a
digest over every record's own hash, go into the manifest, which is recorded with the export and
in the audit trail (``export.built``).

A build may be interrupted (worker killed): the export stays ``building`` with the blob id of the
attempt; the re-run deletes that blob if it got written and builds again from the start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from labelvault.annotation.settings import read_settings
from labelvault.audit.record import audit_project
from labelvault.db.context import SET_PROJECT_CONTEXT, ProjectContext
from labelvault.export.formats import (
    CONTENT_TYPES,
    EXTENSIONS,
    CocoWriter,
    canonical,
    make_writer,
    record_hash,
)
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import LabelVaultError
from labelvault.keys.values import ProjectCipher, new_blob_id, project_cipher
from labelvault.logs import get_logger
from labelvault.storage import BlobNotFoundError, discard_blob

if TYPE_CHECKING:
    from labelvault.platform import Platform

log = get_logger(__name__)
WORKER = Actor.system("export-worker")
SYSTEM = ProjectContext(None, "system")
BUILD_BATCH = 1000
CHUNK_BYTES = 1 << 20
PROGRESS_SECONDS = 1.0
ACCEPTED_STATES = ("accepted", "corrected")
MANIFEST_VERSION = 1


class ExportNotVisibleError(LabelVaultError):
    """The export is not (yet) approved: its request or approval has not committed. The job
    is retried a few times, then gives up."""

    code = "export_not_visible"


def manifest_hash(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(manifest)).hexdigest()


@asynccontextmanager
async def _snapshot(platform: Platform, project_id: uuid.UUID) -> AsyncIterator[AsyncConnection]:
    pool = await platform.db.projects.get(project_id)
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        await conn.execute(SET_PROJECT_CONTEXT, SYSTEM.params())
        yield conn


_ROWS = """
SELECT a.id AS annotation_id, a.item_id, a.state, a.result, v.id AS review_id,
       v.corrected_result, i.kind, i.content, i.meta, i.width, i.height
  FROM annotations a JOIN items i ON i.id = a.item_id
  LEFT JOIN reviews v ON v.annotation_id = a.id
 WHERE (NOT %(only)s OR a.state IN ('accepted', 'corrected')) {extra}
 ORDER BY a.item_id, a.id
"""


def _record(cipher: ProjectCipher, row: dict[str, Any]) -> dict[str, Any]:
    item_id = row["item_id"]
    meta: dict[str, Any] = {}
    if row["meta"] is not None:
        meta = dict(cipher.decrypt_json("items", item_id, "meta", bytes(row["meta"])))
    meta.pop("subject_id", None)  # a link to a person: never leaves
    source = meta.pop("source_name", None)
    text = image = None
    if row["kind"] == "text":
        text = cipher.decrypt("items", item_id, "content", bytes(row["content"])).decode()
    else:
        content = cipher.decrypt_json("items", item_id, "content", bytes(row["content"]))
        image = (
            source
            if isinstance(source, str) and source
            else (f"{item_id}.{content.get('format') or 'img'}")
        )
    if row["state"] == "corrected" and row["corrected_result"] is not None:
        result = cipher.decrypt_json(
            "reviews", row["review_id"], "corrected_result", bytes(row["corrected_result"])
        )
    else:
        result = cipher.decrypt_json(
            "annotations", row["annotation_id"], "result", bytes(row["result"])
        )
    return {
        "annotation_id": str(row["annotation_id"]),
        "item_id": str(item_id),
        "kind": row["kind"],
        "text": text,
        "image": image,
        "width": row["width"],
        "height": row["height"],
        "status": row["state"],
        "result": result,
        "metadata": meta,
    }


async def _records(
    conn: AsyncConnection, cipher: ProjectCipher, only_accepted: bool, images_only: bool = False
) -> AsyncIterator[list[dict[str, Any]]]:
    query = _ROWS.format(extra="AND i.kind = 'image'" if images_only else "")
    async with conn.cursor(name=f"export_{uuid.uuid4().hex}", row_factory=dict_row) as cur:
        await cur.execute(query, {"only": only_accepted})
        while rows := await cur.fetchmany(BUILD_BATCH):
            yield [_record(cipher, r) for r in rows]


@dataclass
class _Stats:
    records: int = 0
    items: int = 0
    last_item: str | None = None
    by_status: Counter[str] = field(default_factory=Counter)
    bundle: Any = field(default_factory=hashlib.sha256)
    records_digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def count(self, record: dict[str, Any]) -> None:
        self.records += 1
        self.by_status[record["status"]] += 1
        if record["item_id"] != self.last_item:
            self.items += 1
            self.last_item = record["item_id"]
        self.records_digest.update(record_hash(record))

    def emit(self, data: bytes) -> bytes:
        self.bundle.update(data)
        self.size += len(data)
        return data


class _Progress:
    def __init__(self, platform: Platform, project_id: uuid.UUID, export_id: uuid.UUID) -> None:
        self.platform, self.project_id, self.export_id = platform, project_id, export_id
        self.last = time.monotonic()

    async def __call__(self, count: int, *, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < PROGRESS_SECONDS:
            return
        self.last = time.monotonic()
        async with self.platform.db.project_tx(self.project_id, SYSTEM) as conn:
            await conn.execute(
                "UPDATE exports SET item_count = %s, updated_at = now() "
                "WHERE id = %s AND state = 'building'",
                [count, self.export_id],
            )


async def _produce(
    platform: Platform,
    cipher: ProjectCipher,
    project_id: uuid.UUID,
    export_id: uuid.UUID,
    fmt: str,
    only_accepted: bool,
    schema: dict[str, Any] | None,
    stats: _Stats,
) -> AsyncIterator[bytes]:
    """The plaintext bundle, in chunks of about ``CHUNK_BYTES``."""
    progress = _Progress(platform, project_id, export_id)
    out = bytearray()
    async with _snapshot(platform, project_id) as conn:
        if fmt == "coco":
            labels = list((schema or {}).get("labels") or [])
            coco = CocoWriter(labels, str(export_id))
            out += coco.begin()
            image_id, last = 0, None
            async for batch in _records(conn, cipher, only_accepted, images_only=True):
                for record in batch:  # pass 1: one image per item, in item order
                    if record["item_id"] != last:
                        image_id, last = image_id + 1, record["item_id"]
                        out += coco.add_image(image_id, record)
                if len(out) >= CHUNK_BYTES:
                    yield stats.emit(bytes(out))
                    out.clear()
            out += coco.between()
            image_id, last = 0, None
            async for batch in _records(conn, cipher, only_accepted, images_only=True):
                for record in batch:  # pass 2, same snapshot and order: the boxes
                    if record["item_id"] != last:
                        image_id, last = image_id + 1, record["item_id"]
                    stats.count(record)
                    out += coco.add_boxes(image_id, record)
                if len(out) >= CHUNK_BYTES:
                    yield stats.emit(bytes(out))
                    out.clear()
                await progress(stats.records)
            out += coco.end()
            stats.extra = coco.counts
        else:
            writer = make_writer(fmt, (schema or {}).get("kind"))
            out += writer.begin()
            async for batch in _records(conn, cipher, only_accepted):
                for record in batch:
                    stats.count(record)
                    out += writer.add(record)
                if len(out) >= CHUNK_BYTES:
                    yield stats.emit(bytes(out))
                    out.clear()
                await progress(stats.records)
            out += writer.end()
    if out:
        yield stats.emit(bytes(out))


async def _store(
    platform: Platform,
    cipher: ProjectCipher,
    project_id: uuid.UUID,
    export_id: uuid.UUID,
    blob_id: str,
    chunks: AsyncIterator[bytes],
) -> None:
    """Encrypt and store an async stream of chunks: the blob store is synchronous, so it runs
    in a thread and pulls each chunk from this event loop (one chunk in flight at a time)."""
    loop = asyncio.get_running_loop()

    async def step() -> bytes | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None

    def pull() -> Iterator[bytes]:
        while (chunk := asyncio.run_coroutine_threadsafe(step(), loop).result()) is not None:
            yield chunk

    try:
        await asyncio.to_thread(
            cipher.put_blob, platform.blobs, "exports", export_id, pull(), blob_id=blob_id
        )
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _claim(
    platform: Platform, project_id: uuid.UUID, export_id: uuid.UUID
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    async with platform.db.project_tx(project_id, SYSTEM) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT state, format, only_accepted, blob_id FROM exports WHERE id = %s FOR UPDATE",
            [export_id],
        )
        row = await cur.fetchone()
        if row is None or row["state"] == "pending_approval":
            raise ExportNotVisibleError("the export is not approved (yet)")
        if row["state"] not in ("approved", "building"):
            return None  # built, rejected or failed meanwhile: nothing to do
        settings = await read_settings(conn)
        attempt = new_blob_id()
        await conn.execute(
            "UPDATE exports SET state = 'building', blob_id = %s, item_count = 0, error = NULL, "
            "updated_at = now() WHERE id = %s",
            [attempt, export_id],
        )
    if row["blob_id"] is not None and row["state"] == "building":  # an interrupted attempt
        with suppress(BlobNotFoundError):
            await asyncio.to_thread(platform.blobs.delete, project_id, row["blob_id"])
    return {**row, "blob_id": attempt}, settings.label_schema


async def build_export(
    platform: Platform, project_id: uuid.UUID, export_id: uuid.UUID
) -> dict[str, Any] | None:
    """Build the bundle of an approved export; returns its manifest (None if there was
    nothing to do)."""
    claimed = await _claim(platform, project_id, export_id)
    if claimed is None:
        return None
    row, schema = claimed
    fmt, only_accepted, blob_id = row["format"], row["only_accepted"], row["blob_id"]
    stats = _Stats()
    try:
        cipher = await project_cipher(platform.keys, project_id)
        chunks = _produce(
            platform, cipher, project_id, export_id, fmt, only_accepted, schema, stats
        )
        await _store(platform, cipher, project_id, export_id, blob_id, chunks)
    except Exception as exc:
        await _failed(platform, project_id, export_id, blob_id, exc)
        raise
    manifest = {
        "version": MANIFEST_VERSION,
        "export_id": str(export_id),
        "project_id": str(project_id),
        "format": fmt,
        "file_name": f"export-{export_id}.{EXTENSIONS[fmt]}",
        "content_type": CONTENT_TYPES[fmt],
        "filter": {
            "only_accepted": only_accepted,
            "states": list(ACCEPTED_STATES) if only_accepted else "all",
        },
        "counts": {
            "records": stats.records,
            "items": stats.items,
            "by_status": dict(sorted(stats.by_status.items())),
            **stats.extra,
        },
        "bundle": {"sha256": stats.bundle.hexdigest(), "bytes": stats.size},
        "records_sha256": stats.records_digest.hexdigest(),
        "record_hash": "sha256 of each record's canonical JSON (sorted keys, no whitespace, "
        "UTF-8); records_sha256 is the sha256 of those 32-byte digests "
        "concatenated in bundle order",
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        ready = await _ready(platform, project_id, export_id, blob_id, stats, manifest)
    except Exception as exc:  # built, but not recorded: failed, never left 'building'
        await _failed(platform, project_id, export_id, blob_id, exc)
        raise
    if not ready:  # another attempt took over: leave it to that one, and its bundle
        log.warning("export build superseded", export_id=str(export_id))
        await _discard(platform, project_id, blob_id)
        return None
    return manifest


async def _ready(
    platform: Platform,
    project_id: uuid.UUID,
    export_id: uuid.UUID,
    blob_id: str,
    stats: _Stats,
    manifest: dict[str, Any],
) -> bool:
    """Record the built bundle (False if another attempt holds the export now)."""
    digest = manifest_hash(manifest)
    async with platform.db.project_tx(project_id, SYSTEM) as conn:
        cur = await conn.execute(
            "UPDATE exports SET state = 'ready', item_count = %s, manifest = %s, "
            "expires_at = now() + make_interval(hours => %s), updated_at = now() "
            "WHERE id = %s AND state = 'building' AND blob_id = %s",
            [
                stats.records,
                Jsonb(manifest),
                platform.settings.export_retention_hours,
                export_id,
                blob_id,
            ],
        )
        if cur.rowcount != 1:
            return False
        await audit_project(
            conn,
            WORKER,
            "export.built",
            resource_type="export",
            resource_id=export_id,
            project_id=project_id,
            details={
                "format": manifest["format"],
                "only_accepted": manifest["filter"]["only_accepted"],
                "records": stats.records,
                "items": stats.items,
                "bytes": stats.size,
                "bundle_sha256": manifest["bundle"]["sha256"],
                "records_sha256": manifest["records_sha256"],
                "manifest_sha256": digest,
                "retention_hours": platform.settings.export_retention_hours,
            },
        )
    return True


async def _discard(platform: Platform, project_id: uuid.UUID, blob_id: str) -> None:
    await asyncio.to_thread(discard_blob, platform.blobs, project_id, blob_id)


async def _failed(
    platform: Platform,
    project_id: uuid.UUID,
    export_id: uuid.UUID,
    blob_id: str,
    exc: Exception,
) -> None:
    """Record the failure (the attempt's bundle, whole or partial, is deleted)."""
    await _discard(platform, project_id, blob_id)
    message = (
        exc.message
        if isinstance(exc, LabelVaultError)
        else "the bundle could not be built (internal error)"
    )
    log.error("export build failed", export_id=str(export_id), error=type(exc).__name__)
    try:
        async with platform.db.project_tx(project_id, SYSTEM) as conn:
            cur = await conn.execute(
                "UPDATE exports SET state = 'failed', error = %s, updated_at = now() "
                "WHERE id = %s AND state = 'building' AND blob_id = %s",  # this attempt's
                [message[:500], export_id, blob_id],
            )
            if cur.rowcount != 1:  # a newer attempt holds the export: its outcome is the one
                return
            await audit_project(
                conn,
                WORKER,
                "export.failed",
                outcome="failure",
                resource_type="export",
                resource_id=export_id,
                project_id=project_id,
                details={"error": type(exc).__name__},
            )
    except Exception as inner:  # the database is away: the job's failure is still recorded
        log.error("could not record the export failure", error=type(inner).__name__)
