"""The asynchronous client (``httpx.AsyncClient``): the same methods as ``Client``, awaited."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, BinaryIO, cast

import httpx

from labelvault.client import ops
from labelvault.client._base import Verify, _Base, part_path, raise_for_problem, upload_headers
from labelvault.client.errors import LabelVaultClientError, transport_error
from labelvault.client.models import (
    Aggregates,
    AuditPage,
    Decision,
    Download,
    DownloadLink,
    Export,
    ImportReport,
    MyAnnotation,
    Project,
    ProjectSettings,
    Review,
    ReviewSummary,
    SubmitResult,
    Task,
)
from labelvault.client.ops import Call, DecisionKind, Id, OnError, Op, T, Upload


def _open_read(upload: Upload) -> BinaryIO:
    return upload.path.open("rb")


async def _chunks(upload: Upload) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(_open_read, upload)
    try:
        while chunk := await asyncio.to_thread(f.read, ops.CHUNK):
            if upload.progress:
                upload.progress(len(chunk))
            yield chunk
    finally:
        await asyncio.to_thread(f.close)


class AsyncClient(_Base):
    """The asynchronous twin of ``Client`` (same arguments, same results, same errors).

    ``async with AsyncClient(url, token) as lv: task = await lv.next_task(project_id)``
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        token_file: str | os.PathLike[str] | None = None,
        verify: Verify = True,
        timeout: float = 30,
        **httpx_options: Any,
    ) -> None:
        super().__init__(url, token, token_file=token_file, verify=verify, timeout=timeout)
        self._http = httpx.AsyncClient(**self._client_kwargs(), **httpx_options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    async def _send(self, call: Call) -> httpx.Response:
        try:
            if call.download_to is not None:
                return await self._download(call)
            content = _chunks(call.upload) if call.upload else None
            response = await self._http.request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                content=content,
                headers=upload_headers(call),
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, call.method, httpx.URL(call.path).path) from None
        raise_for_problem(response)
        return response

    async def _download(self, call: Call) -> httpx.Response:
        assert call.download_to is not None
        partial = part_path(call.download_to)
        async with self._http.stream(call.method, call.path, params=call.params) as response:
            if response.status_code >= 400:
                await response.aread()
                raise_for_problem(response)
            out = await asyncio.to_thread(partial.open, "wb")
            try:
                async for chunk in response.aiter_bytes(ops.CHUNK):
                    await asyncio.to_thread(out.write, chunk)
                await asyncio.to_thread(out.close)
                await asyncio.to_thread(os.replace, partial, call.download_to)
            finally:
                out.close()
                await asyncio.to_thread(partial.unlink, True)
        return response

    async def _run(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(await self._send(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    # -- projects -----------------------------------------------------------------------------

    async def get_project(self, project_id: Id) -> Project:
        return await self._run(ops.get_project(project_id))

    async def get_settings(self, project_id: Id) -> ProjectSettings:
        return await self._run(ops.get_settings(project_id))

    async def update_settings(self, project_id: Id, **changes: Any) -> ProjectSettings:
        """Change project settings (label_schema, overlap, review_share, lease_seconds...)."""
        return await self._run(ops.update_settings(project_id, changes))

    async def set_label_schema(self, project_id: Id, schema: Mapping[str, Any]) -> ProjectSettings:
        return await self._run(ops.update_settings(project_id, {"label_schema": dict(schema)}))

    async def get_label_schema(self, project_id: Id) -> dict[str, Any] | None:
        return (await self.get_settings(project_id)).label_schema

    # -- data owner ---------------------------------------------------------------------------

    async def import_file(
        self,
        project_id: Id,
        path: str | os.PathLike[str],
        fmt: str | None = None,
        on_error: OnError = "reject",
        *,
        name: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Upload one file (streamed). ``progress(n)`` is called with each chunk's size.

        Raises ``Invalid`` (with ``.report``) when rows are bad and ``on_error="reject"``."""
        return await self._run(ops.import_file(project_id, path, fmt, on_error, name, progress))

    # -- annotator ----------------------------------------------------------------------------

    async def next_task(self, project_id: Id) -> Task | None:
        """The caller's next task (leased to them), or ``None`` when there is no work."""
        return await self._run(ops.next_task(project_id))

    async def get_task(self, project_id: Id, task_id: Id) -> Task:
        return await self._run(ops.get_task(project_id, task_id))

    async def submit(self, project_id: Id, task_id: Id, result: Mapping[str, Any]) -> SubmitResult:
        return await self._run(ops.submit(project_id, task_id, result))

    async def skip(self, project_id: Id, task_id: Id) -> None:
        await self._run(ops.skip(project_id, task_id))

    async def my_annotations(self, project_id: Id, limit: int = 10) -> list[MyAnnotation]:
        return await self._run(ops.my_annotations(project_id, limit))

    # -- manager --------------------------------------------------------------------------------

    async def assign(
        self,
        project_id: Id,
        annotator_id: Id,
        count: int,
        *,
        import_id: Id | None = None,
        gold_only: bool = False,
    ) -> int:
        return await self._run(ops.assign(project_id, annotator_id, count, import_id, gold_only))

    async def aggregates(self, project_id: Id, days: int = 30) -> Aggregates:
        return await self._run(ops.aggregates(project_id, days))

    async def audit(
        self,
        project_id: Id,
        *,
        user: str | None = None,
        action: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        cursor: int | None = None,
        limit: int | None = None,
        order: str | None = None,
    ) -> AuditPage:
        return await self._run(
            ops.audit(
                project_id,
                {
                    "user": user,
                    "action": action,
                    "resource_type": resource_type,
                    "resource_id": resource_id,
                    "since": since,
                    "until": until,
                    "cursor": cursor,
                    "limit": limit,
                    "order": order,
                },
            )
        )

    # -- reviewer -------------------------------------------------------------------------------

    async def review_queue(self, project_id: Id, limit: int = 50) -> list[ReviewSummary]:
        return await self._run(ops.review_queue(project_id, limit))

    async def next_review(self, project_id: Id) -> Review | None:
        return await self._run(ops.next_review(project_id))

    async def get_review(self, project_id: Id, review_id: Id) -> Review:
        return await self._run(ops.get_review(project_id, review_id))

    async def decide(
        self,
        project_id: Id,
        review_id: Id,
        decision: DecisionKind,
        *,
        comment: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> Decision:
        return await self._run(ops.decide(project_id, review_id, decision, comment, result))

    # -- exports --------------------------------------------------------------------------------

    async def request_export(
        self, project_id: Id, fmt: str = "jsonl", *, only_accepted: bool = True, **options: Any
    ) -> Export:
        """Request an export (jsonl, csv, parquet, coco); it may wait for a second person's
        approval (``approve_export``) before it is built."""
        return await self._run(ops.request_export(project_id, fmt, only_accepted, options))

    async def list_exports(self, project_id: Id, limit: int = 50) -> list[Export]:
        return await self._run(ops.list_exports(project_id, limit))

    async def reject_export(self, project_id: Id, export_id: Id) -> Export:
        return await self._run(ops.reject_export(project_id, export_id))

    async def export_status(self, project_id: Id, export_id: Id) -> Export:
        return await self._run(ops.export_status(project_id, export_id))

    async def approve_export(self, project_id: Id, export_id: Id) -> Export:
        return await self._run(ops.approve_export(project_id, export_id))

    async def wait_for_export(
        self, project_id: Id, export_id: Id, *, max_wait: float = 300, interval: float = 0.5
    ) -> Export:
        """Poll until the export is ready; raises ``LabelVaultClientError`` if it fails."""
        deadline = time.monotonic() + max_wait
        while True:
            export = await self.export_status(project_id, export_id)
            if export.ready:
                return export
            if export.finished:
                why = f": {export.error}" if export.error else ""
                raise LabelVaultClientError(
                    409, "export_" + export.state, f"export is {export.state}{why}"
                )
            if time.monotonic() > deadline:
                raise LabelVaultClientError(0, "timeout", f"export still {export.state}")
            await asyncio.sleep(interval)

    async def create_download_link(self, project_id: Id, export_id: Id) -> DownloadLink:
        return await self._run(ops.create_download_link(project_id, export_id))

    async def download_export(
        self,
        project_id: Id,
        export_id: Id,
        to_path: str | os.PathLike[str],
        *,
        link: DownloadLink | None = None,
    ) -> Download:
        """Stream the export to ``to_path`` (written to a temporary name, then renamed)."""
        return await self._run(ops.download_export(project_id, export_id, to_path, link))
