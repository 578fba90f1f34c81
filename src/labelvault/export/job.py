"""The export build as a durable job: arguments are ids only."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from procrastinate import JobContext, RetryStrategy

from labelvault.export.build import ExportNotVisibleError, build_export
from labelvault.jobs.queue import JobQueue, job

if TYPE_CHECKING:
    from labelvault.platform import Platform

BUILD_TASK = "export.build"


async def defer_build(
    jobs: JobQueue, project_id: uuid.UUID, export_id: uuid.UUID, *, queue: str | None = None
) -> None:
    """Queue the build (once: a second request while one waits is a no-op; never two builds of
    one export at the same time)."""
    key = f"export:{export_id}"
    await jobs.defer(
        BUILD_TASK,
        lock=key,
        queueing_lock=key,
        queue=queue,
        project_id=str(project_id),
        export_id=str(export_id),
    )


# The approval commits just after the job is queued: a worker that is faster sees the export
# not yet approved and tries again a moment later (and gives up if the approval never came).
@job(
    BUILD_TASK,
    retry=RetryStrategy(max_attempts=20, wait=1, retry_exceptions={ExportNotVisibleError}),
)
async def build_export_job(context: JobContext, project_id: str, export_id: str) -> None:
    platform: Platform = context.additional_context["platform"]
    pid, eid = uuid.UUID(project_id), uuid.UUID(export_id)
    try:
        await build_export(platform, pid, eid)
    except asyncio.CancelledError:
        # the worker is shutting down before the build finished: hand it to the next worker
        await asyncio.shield(defer_build(platform.jobs, pid, eid, queue=context.job.queue))
        raise
