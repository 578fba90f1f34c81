"""Durable background jobs (imports, exports, re-encryption, retention) through procrastinate
on the platform's PostgreSQL: :mod:`.schema` installs it, :mod:`.queue` defers jobs,
:mod:`.worker` runs them."""

from labelvault.jobs.queue import JobQueue, job, task_name
from labelvault.jobs.schema import JOB_SCHEMA, install_job_schema
from labelvault.jobs.worker import (
    WorkerOptions,
    rescue_stalled_jobs,
    run_pending_jobs,
    run_worker,
)

__all__ = [
    "JOB_SCHEMA",
    "JobQueue",
    "WorkerOptions",
    "install_job_schema",
    "job",
    "rescue_stalled_jobs",
    "run_pending_jobs",
    "run_worker",
    "task_name",
]
