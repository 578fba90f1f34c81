"""``labelvault worker``: run background jobs (exports, and later imports, re-encryption,
retention purges) until SIGINT/SIGTERM. Run as many as you like, on any machine that reaches
the database; a job of a worker that died is picked up again by another."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import typer

from labelvault.cli.runtime import settings_or_fail, with_platform
from labelvault.jobs import WorkerOptions, run_worker
from labelvault.platform import Platform


def worker_command(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="data directory (LABELVAULT_DATA_DIR)"
    ),
    concurrency: int = typer.Option(2, min=1, max=64, help="jobs run at the same time"),
    heartbeat: float = typer.Option(
        10.0, "--heartbeat-seconds", min=0.1, help="how often this worker says it is alive"
    ),
    stalled_after: float = typer.Option(
        30.0,
        "--stalled-after-seconds",
        min=0.5,
        help="a worker silent this long is dead: its jobs are run again",
    ),
    poll: float = typer.Option(
        5.0, "--poll-seconds", min=0.1, help="fallback polling interval for new jobs"
    ),
    graceful: float = typer.Option(
        30.0, "--graceful-seconds", min=0.0, help="on stop, how long running jobs may finish"
    ),
    once: bool = typer.Option(False, "--once", help="run what is queued now, then exit"),
    queue: list[str] | None = typer.Option(
        None, "--queue", help="only these queues (repeat; default: all)"
    ),
) -> None:
    """Run background jobs until interrupted."""
    settings = settings_or_fail(data_dir=data_dir)
    options = WorkerOptions(
        concurrency=concurrency,
        heartbeat_seconds=heartbeat,
        stalled_after_seconds=stalled_after,
        poll_seconds=poll,
        graceful_seconds=graceful,
        wait=not once,
        queues=tuple(queue) if queue else None,
    )

    async def go(platform: Platform) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        typer.echo("worker started", err=True)
        await run_worker(platform, stop, options)
        typer.echo("worker stopped", err=True)

    with_platform(settings, go)
