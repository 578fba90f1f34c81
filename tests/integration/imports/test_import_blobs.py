"""Image imports leave no blob behind that no row refers to: not for a duplicate, not for an
import that fails, not for a batch its worker thread was still preparing when it failed."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile

import pytest
from PIL import Image
from tests.support.platform import make_org, make_project

from labelvault.access.scope import ProjectScope
from labelvault.datasets.service import ImportRowsError, _Preparer, import_items
from labelvault.db.context import ProjectContext
from labelvault.kernel.actor import Actor, ActorKind
from labelvault.platform import Platform


def _png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (5, 4), (seed % 256, 7, 9)).save(out, format="PNG")
    return out.getvalue()


def _zip(entries: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


async def _setup(platform: Platform) -> ProjectScope:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    actor = Actor(ActorKind.USER, user_id=uuid.uuid4(), org_id=org.id)
    return ProjectScope(project.id, actor, "data_owner")


async def _referenced(platform: Platform, scope: ProjectScope) -> set[str]:
    async with platform.db.project_tx(scope.project_id, ProjectContext(None, "system")) as conn:
        cur = await conn.execute("SELECT blob_id FROM items WHERE blob_id IS NOT NULL")
        return {r[0] for r in await cur.fetchall()}


def _stored(platform: Platform, scope: ProjectScope) -> set[str]:
    return set(platform.blobs.list_ids(scope.project_id))


async def test_duplicate_images_keep_no_blob(platform: Platform) -> None:
    scope = await _setup(platform)
    same = _png(1)
    archive = {"a.png": same, "b.png": same, "c.png": _png(2)}
    report = await import_items(
        platform.db, platform.keys, platform.blobs, scope, _zip(archive), fmt="zip"
    )
    assert (report.items_added, report.duplicates) == (2, 1)
    again = await import_items(
        platform.db, platform.keys, platform.blobs, scope, _zip(archive), fmt="zip"
    )
    assert (again.items_added, again.duplicates) == (0, 3)
    referenced = await _referenced(platform, scope)
    assert len(referenced) == 2 and _stored(platform, scope) == referenced


async def test_a_failed_image_import_keeps_no_blob(platform: Platform) -> None:
    scope = await _setup(platform)
    archive = {f"{n}.png": _png(n) for n in range(6)} | {"z.png": b"not an image"}
    with pytest.raises(ImportRowsError):
        await import_items(
            platform.db, platform.keys, platform.blobs, scope, _zip(archive), fmt="zip"
        )
    assert await _referenced(platform, scope) == set()
    assert _stored(platform, scope) == set()


async def test_a_blob_written_after_the_import_failed_is_deleted(platform: Platform) -> None:
    """The worker thread is not waited for when an import fails: what it writes afterwards
    is deleted as soon as it is written."""
    scope = await _setup(platform)
    preparer = _Preparer(scope, None, platform.blobs, None, b"k" * 32)  # type: ignore[arg-type]

    def write(blob_id: str) -> None:
        platform.blobs.put(scope.project_id, blob_id, [b"ciphertext"])
        preparer._kept(blob_id)

    await asyncio.to_thread(write, "before")
    assert _stored(platform, scope) == {"before"}
    preparer.discard()
    assert _stored(platform, scope) == set()
    await asyncio.to_thread(write, "after")  # the thread finishing its batch
    assert _stored(platform, scope) == set()
