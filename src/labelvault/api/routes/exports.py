"""Exports (DESIGN invariant 8): managers and data owners only; annotators and reviewers have
no export route at all. Request, second-person approval, progress, a one-time link and the
download itself (the requester only, once)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from labelvault.access import Permission, Scope
from labelvault.api.security import RequestContext, access, authorize, project_scope
from labelvault.crypto import DecryptionError
from labelvault.export import service
from labelvault.export.formats import CONTENT_TYPES
from labelvault.kernel.ids import parse_id
from labelvault.keys.values import project_cipher
from labelvault.storage import discard_blob

router = APIRouter(prefix="/api/v1/projects/{project_id}/exports", tags=["exports"])
Ctx = Annotated[RequestContext, Depends(authorize)]


class ExportIn(BaseModel):
    model_config = {"extra": "forbid"}
    format: Literal["jsonl", "csv", "parquet", "coco"]
    only_accepted: bool = True


@router.post("", status_code=201)
@access(Permission.EXPORT_REQUEST, Scope.PROJECT)
async def request_export(project_id: uuid.UUID, body: ExportIn, ctx: Ctx) -> dict[str, Any]:
    """Request an export; it waits for a second person's approval when the project says so."""
    return await service.request_export(
        ctx.platform.db, project_scope(ctx), body.format, body.only_accepted, jobs=ctx.platform.jobs
    )


@router.get("")
@access(Permission.EXPORT_REQUEST, Scope.PROJECT)
async def list_exports(
    project_id: uuid.UUID, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    return await service.list_exports(ctx.platform.db, project_scope(ctx), limit=limit)


@router.get("/{export_id}")
@access(Permission.EXPORT_REQUEST, Scope.PROJECT)
async def get_export(project_id: uuid.UUID, export_id: str, ctx: Ctx) -> dict[str, Any]:
    """State and progress (``item_count`` while building), the manifest once built."""
    return await service.get_export(ctx.platform.db, project_scope(ctx), export_id)


@router.post("/{export_id}/approve")
@access(Permission.EXPORT_APPROVE, Scope.PROJECT)
async def approve_export(project_id: uuid.UUID, export_id: str, ctx: Ctx) -> dict[str, Any]:
    return await service.approve_export(
        ctx.platform.db, project_scope(ctx), export_id, jobs=ctx.platform.jobs
    )


@router.post("/{export_id}/reject")
@access(Permission.EXPORT_APPROVE, Scope.PROJECT)
async def reject_export(project_id: uuid.UUID, export_id: str, ctx: Ctx) -> dict[str, Any]:
    return await service.reject_export(ctx.platform.db, project_scope(ctx), export_id)


@router.post("/{export_id}/link")
@access(Permission.EXPORT_REQUEST, Scope.PROJECT)
async def create_link(project_id: uuid.UUID, export_id: str, ctx: Ctx) -> dict[str, Any]:
    """A one-time download link for the requester, valid 10 minutes."""
    return await service.create_download_link(ctx.platform.db, project_scope(ctx), export_id)


def _stream(first: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from chunks


class _SpentBundleResponse(StreamingResponse):
    """The decrypted bundle, streamed; once the response is over (sent whole, the client gone,
    or never even started) the bundle is deleted: its link is spent, it can never be fetched
    again."""

    def __init__(self, content: Iterator[bytes], forget: Callable[[], None], **kw: Any) -> None:
        super().__init__(content, **kw)
        self._forget = forget

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.to_thread(self._forget)


@router.get("/{export_id}/download")
@access(Permission.EXPORT_REQUEST, Scope.PROJECT)
async def download(
    project_id: uuid.UUID,
    export_id: str,
    ctx: Ctx,
    token: Annotated[str, Query(min_length=1, max_length=200)],
) -> StreamingResponse:
    """The decrypted bundle, streamed; the link is used up by this request."""
    scope = project_scope(ctx)
    eid = parse_id(export_id, what="export")
    cipher = await project_cipher(ctx.platform.keys, scope.project_id)

    def open_first(blob_id: str) -> tuple[bytes, Iterator[bytes]]:
        # the first chunk decrypts (authenticates) before the link is spent
        chunks = cipher.get_blob(ctx.platform.blobs, "exports", eid, blob_id)
        try:
            return next(chunks, b""), chunks
        except BaseException:
            if hasattr(chunks, "close"):
                chunks.close()
            raise

    opened: list[Iterator[bytes]] = []

    async def open_bundle(blob_id: str) -> tuple[bytes, Iterator[bytes]]:
        try:
            first, rest = await asyncio.to_thread(open_first, blob_id)
        except DecryptionError:
            # perhaps re-encrypted under a key version another process made since this one
            # loaded the keyring: look again before calling the bundle damaged
            await ctx.platform.keys.reload(str(scope.project_id))
            first, rest = await asyncio.to_thread(open_first, blob_id)
        opened.append(rest)
        return first, rest

    try:
        used, (first, chunks) = await service.consume_download(
            ctx.platform.db, scope, eid, token, open_bundle
        )
    except BaseException:  # opened, but the link was not spent (a race, a failed write)
        for rest in opened:
            if hasattr(rest, "close"):
                rest.close()
        raise
    name = used["manifest"]["file_name"]
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-LabelVault-Bundle-SHA256": used["manifest"]["bundle"]["sha256"],
    }
    platform, blob_id = ctx.platform, used["blob_id"]

    def forget() -> None:
        with contextlib.suppress(ValueError):  # still being read by a cancelled transfer
            if hasattr(chunks, "close"):
                chunks.close()
        discard_blob(platform.blobs, scope.project_id, blob_id)

    return _SpentBundleResponse(
        _stream(first, chunks),
        forget,
        media_type=CONTENT_TYPES[used["format"]],
        headers=headers,
    )
