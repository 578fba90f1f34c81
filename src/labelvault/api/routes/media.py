"""Image renditions for the one task or review in front of the caller (DESIGN invariant 8).

No reusable URL: the session (or token) is required, nothing goes in the URL but ids, each
fetch is authorised through the same domain call that serves the task or review (so only the
caller's own task or queued review yields a blob), decrypted in memory, re-rendered with the
viewer's visible watermark, sent ``no-store``, and audited (``item.image.render``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from labelvault.access import Permission, Scope
from labelvault.annotation import tasks
from labelvault.api.security import RequestContext, access, authorize, project_scope
from labelvault.audit.record import audit_project
from labelvault.kernel.errors import NotFoundError
from labelvault.keys.values import project_cipher
from labelvault.review import service as reviews
from labelvault.web import queries
from labelvault.web.watermark import Mark, watermark_png

router = APIRouter(prefix="/api/v1/projects/{project_id}", tags=["media"])
Ctx = Annotated[RequestContext, Depends(authorize)]
MAX_IMAGE_BYTES = 64 * 1024 * 1024


async def _rendition(
    ctx: RequestContext, item_id: uuid.UUID, blob_id: str, via: str, via_id: uuid.UUID
) -> Response:
    assert ctx.project_id is not None
    scope = project_scope(ctx)
    cipher = await project_cipher(ctx.platform.keys, ctx.project_id)

    def read() -> bytes:
        data = bytearray()
        for chunk in cipher.get_blob(ctx.platform.blobs, "items", item_id, blob_id):
            data += chunk
            if len(data) > MAX_IMAGE_BYTES:
                raise NotFoundError("image too large to render")
        return bytes(data)

    original = await asyncio.to_thread(read)
    mark = Mark.now(
        str(ctx.user.user_id or ""), await queries.viewer_email(ctx.platform.db, ctx.user)
    )
    png = await asyncio.to_thread(watermark_png, original, mark)
    async with ctx.platform.db.project_tx(ctx.project_id, scope.context()) as conn:
        await audit_project(
            conn,
            ctx.user,
            "item.image.render",
            resource_type=via,
            resource_id=via_id,
            project_id=ctx.project_id,
            details={"item": str(item_id), "mark": mark.nonce},
        )
    return Response(
        png,
        media_type="image/png",
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": "inline",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


@router.get("/tasks/{task_id}/image")
@access(Permission.TASK_WORK, Scope.PROJECT)
async def task_image(project_id: uuid.UUID, task_id: str, ctx: Ctx) -> Response:
    view = await tasks.get_task(ctx.platform.db, ctx.platform.keys, project_scope(ctx), task_id)
    if view.image_blob is None:
        raise NotFoundError("this task has no image")
    return await _rendition(ctx, view.item_id, view.image_blob, "task", view.task_id)


@router.get("/reviews/{review_id}/image")
@access(Permission.REVIEW_WORK, Scope.PROJECT)
async def review_image(project_id: uuid.UUID, review_id: str, ctx: Ctx) -> Response:
    found = await reviews.get_review(
        ctx.platform.db, ctx.platform.keys, project_scope(ctx), review_id
    )
    if found is None or "image_blob" not in found["content"]:
        raise NotFoundError("this review has no image")
    return await _rendition(
        ctx, found["item_id"], found["content"]["image_blob"], "review", found["review_id"]
    )
