"""The synchronous client (``httpx.Client``, one keep-alive connection pool)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, cast

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


def _chunks(upload: Upload) -> Iterator[bytes]:
    with upload.path.open("rb") as f:
        while chunk := f.read(ops.CHUNK):
            if upload.progress:
                upload.progress(len(chunk))
            yield chunk


class Client(_Base):
    """LabelVault API client. ``Client(url, token, verify=..., timeout=30)``; the token may
    also come from ``token_file=``, ``LABELVAULT_TOKEN`` or ``LABELVAULT_TOKEN_FILE``.

    Use it as a context manager (or call ``close()``) to release its connections.
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
        self._http = httpx.Client(**self._client_kwargs(), **httpx_options)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, call: Call) -> httpx.Response:
        try:
            if call.download_to is not None:
                return self._download(call)
            content = _chunks(call.upload) if call.upload else None
            response = self._http.request(
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

    def _download(self, call: Call) -> httpx.Response:
        assert call.download_to is not None
        partial = part_path(call.download_to)
        with self._http.stream(call.method, call.path, params=call.params) as response:
            if response.status_code >= 400:
                response.read()
                raise_for_problem(response)
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(ops.CHUNK):
                        out.write(chunk)
                os.replace(partial, call.download_to)
            finally:
                partial.unlink(missing_ok=True)
        return response

    def _run(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(self._send(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    # -- projects -----------------------------------------------------------------------------

    def get_project(self, project_id: Id) -> Project:
        return self._run(ops.get_project(project_id))

    def get_settings(self, project_id: Id) -> ProjectSettings:
        return self._run(ops.get_settings(project_id))

    def update_settings(self, project_id: Id, **changes: Any) -> ProjectSettings:
        """Change project settings (label_schema, overlap, review_share, lease_seconds...)."""
        return self._run(ops.update_settings(project_id, changes))

    def set_label_schema(self, project_id: Id, schema: Mapping[str, Any]) -> ProjectSettings:
        return self._run(ops.update_settings(project_id, {"label_schema": dict(schema)}))

    def get_label_schema(self, project_id: Id) -> dict[str, Any] | None:
        return self.get_settings(project_id).label_schema

    # -- data owner ---------------------------------------------------------------------------

    def import_file(
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
        return self._run(ops.import_file(project_id, path, fmt, on_error, name, progress))

    # -- annotator ----------------------------------------------------------------------------

    def next_task(self, project_id: Id) -> Task | None:
        """The caller's next task (leased to them), or ``None`` when there is no work."""
        return self._run(ops.next_task(project_id))

    def get_task(self, project_id: Id, task_id: Id) -> Task:
        return self._run(ops.get_task(project_id, task_id))

    def submit(self, project_id: Id, task_id: Id, result: Mapping[str, Any]) -> SubmitResult:
        return self._run(ops.submit(project_id, task_id, result))

    def skip(self, project_id: Id, task_id: Id) -> None:
        self._run(ops.skip(project_id, task_id))

    def my_annotations(self, project_id: Id, limit: int = 10) -> list[MyAnnotation]:
        return self._run(ops.my_annotations(project_id, limit))

    # -- manager --------------------------------------------------------------------------------

    def assign(
        self,
        project_id: Id,
        annotator_id: Id,
        count: int,
        *,
        import_id: Id | None = None,
        gold_only: bool = False,
    ) -> int:
        return self._run(ops.assign(project_id, annotator_id, count, import_id, gold_only))

    def aggregates(self, project_id: Id, days: int = 30) -> Aggregates:
        return self._run(ops.aggregates(project_id, days))

    def audit(
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
        return self._run(
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

    def review_queue(self, project_id: Id, limit: int = 50) -> list[ReviewSummary]:
        return self._run(ops.review_queue(project_id, limit))

    def next_review(self, project_id: Id) -> Review | None:
        return self._run(ops.next_review(project_id))

    def get_review(self, project_id: Id, review_id: Id) -> Review:
        return self._run(ops.get_review(project_id, review_id))

    def decide(
        self,
        project_id: Id,
        review_id: Id,
        decision: DecisionKind,
        *,
        comment: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> Decision:
        return self._run(ops.decide(project_id, review_id, decision, comment, result))

    # -- exports --------------------------------------------------------------------------------

    def request_export(
        self, project_id: Id, fmt: str = "jsonl", *, only_accepted: bool = True, **options: Any
    ) -> Export:
        """Request an export (jsonl, csv, parquet, coco); it may wait for a second person's
        approval (``approve_export``) before it is built."""
        return self._run(ops.request_export(project_id, fmt, only_accepted, options))

    def list_exports(self, project_id: Id, limit: int = 50) -> list[Export]:
        return self._run(ops.list_exports(project_id, limit))

    def reject_export(self, project_id: Id, export_id: Id) -> Export:
        return self._run(ops.reject_export(project_id, export_id))

    def export_status(self, project_id: Id, export_id: Id) -> Export:
        return self._run(ops.export_status(project_id, export_id))

    def approve_export(self, project_id: Id, export_id: Id) -> Export:
        return self._run(ops.approve_export(project_id, export_id))

    def wait_for_export(
        self, project_id: Id, export_id: Id, *, max_wait: float = 300, interval: float = 0.5
    ) -> Export:
        """Poll until the export is ready; raises ``LabelVaultClientError`` if it fails."""
        deadline = time.monotonic() + max_wait
        while True:
            export = self.export_status(project_id, export_id)
            if export.ready:
                return export
            if export.finished:
                why = f": {export.error}" if export.error else ""
                raise LabelVaultClientError(
                    409, "export_" + export.state, f"export is {export.state}{why}"
                )
            if time.monotonic() > deadline:
                raise LabelVaultClientError(0, "timeout", f"export still {export.state}")
            time.sleep(interval)

    def create_download_link(self, project_id: Id, export_id: Id) -> DownloadLink:
        return self._run(ops.create_download_link(project_id, export_id))

    def download_export(
        self,
        project_id: Id,
        export_id: Id,
        to_path: str | os.PathLike[str],
        *,
        link: DownloadLink | None = None,
    ) -> Download:
        """Stream the export to ``to_path`` (written to a temporary name, then renamed)."""
        return self._run(ops.download_export(project_id, export_id, to_path, link))
