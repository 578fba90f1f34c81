"""Running jobs: ``labelvault worker``, and the in-process worker of ``labelvault serve``.

A worker registers itself and sends a heartbeat every ``heartbeat_seconds``. A worker that
dies (killed, machine lost) stops sending it; after ``stalled_after_seconds`` every running
worker's rescue loop puts that worker's jobs back in the queue, and the next free worker runs
them again from the start (tasks are written to be restartable: an export rebuilds its bundle
under a fresh blob id). A worker stopped gracefully finishes its jobs first (at most
``graceful_seconds``), then aborts the rest, which re-queue themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procrastinate import App
from procrastinate.worker import Worker

from labelvault.logs import get_logger

if TYPE_CHECKING:
    from labelvault.platform import Platform

log = get_logger(__name__)
OLD_JOBS_HOURS = 24 * 7


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 2
    heartbeat_seconds: float = 10.0
    stalled_after_seconds: float = 30.0
    poll_seconds: float = 5.0
    graceful_seconds: float = 30.0
    name: str = "labelvault"
    # None: every queue
    queues: tuple[str, ...] | None = None
    # False: run what is queued now, then return (tests, cron-style runs)
    wait: bool = True


async def rescue_stalled_jobs(app: App, stalled_after_seconds: float) -> int:
    """Put the running jobs of workers silent for ``stalled_after_seconds`` back in the queue."""
    manager = app.job_manager
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after_seconds)
    rescued = 0
    for job in stalled:
        try:
            await manager.retry_job(job)
        except Exception as exc:  # another worker rescued it first
            log.info("stalled job not retried", job_id=job.id, error=type(exc).__name__)
            continue
        rescued += 1
        log.warning("stalled job re-queued", job_id=job.id, task=job.task_name)
    return rescued


async def _rescue_loop(app: App, options: WorkerOptions) -> None:
    interval = max(options.stalled_after_seconds / 3, 0.5)
    cleaned = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            await rescue_stalled_jobs(app, options.stalled_after_seconds)
            if loop.time() - cleaned > 3600:
                await app.job_manager.delete_old_jobs(nb_hours=OLD_JOBS_HOURS)
                cleaned = loop.time()
        except Exception as exc:  # the database is away for a moment: try again later
            log.warning("job rescue failed", error=type(exc).__name__)
        await asyncio.sleep(interval)


async def run_worker(
    platform: Platform, stop_event: asyncio.Event, options: WorkerOptions | None = None
) -> None:
    """Run jobs until ``stop_event`` is set (or, with ``wait=False``, until the queue is
    empty). Signals are left to the caller."""
    opts = options or WorkerOptions()
    app = await platform.jobs.app()
    await rescue_stalled_jobs(app, opts.stalled_after_seconds)
    worker = Worker(
        app,
        name=opts.name,
        queues=list(opts.queues) if opts.queues else None,
        concurrency=opts.concurrency,
        wait=opts.wait,
        fetch_job_polling_interval=opts.poll_seconds,
        install_signal_handlers=False,
        update_heartbeat_interval=opts.heartbeat_seconds,
        stalled_worker_timeout=opts.stalled_after_seconds,
        shutdown_graceful_timeout=opts.graceful_seconds,
        additional_context={"platform": platform},
    )
    run = asyncio.create_task(worker.run(), name="jobs-worker")  # type: ignore[no-untyped-call]
    rescue = asyncio.create_task(_rescue_loop(app, opts), name="jobs-rescue")
    stop = asyncio.create_task(stop_event.wait(), name="jobs-stop")
    try:
        await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        worker.stop()  # type: ignore[no-untyped-call]
        for task in (rescue, stop):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run


async def run_pending_jobs(platform: Platform) -> None:
    """Run every job queued now in this process, then return."""
    await run_worker(platform, asyncio.Event(), WorkerOptions(wait=False, concurrency=1))
