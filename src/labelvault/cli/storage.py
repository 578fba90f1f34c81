"""``labelvault storage reconcile``: delete the blobs no row refers to (what a crashed import
or put left behind), now; the server does it daily."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from labelvault.cli.runtime import settings_or_fail, with_platform
from labelvault.platform import Platform

storage_app = typer.Typer(no_args_is_help=True, help="Blob storage: orphaned blobs.")


@storage_app.command("reconcile")
def reconcile(
    grace_hours: int = typer.Option(
        24,
        "--grace-hours",
        min=1,
        help="only blobs written at least this many hours ago (an import may still be running)",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the orphans, delete nothing"),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="data directory (LABELVAULT_DATA_DIR)"
    ),
) -> None:
    """Delete the blobs no row refers to, now (the server does it daily).

    Only blobs written more than --grace-hours ago, and the remains of unfinished
    writes started before then. Exit 1 if a project could not be reconciled or an item's
    image is missing from the store."""
    from labelvault.retention.orphans import ReconcileResult, reconcile_all

    settings = settings_or_fail(data_dir=data_dir)
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=grace_hours)

    async def go(platform: Platform) -> list[ReconcileResult] | None:
        return await reconcile_all(platform, cutoff=cutoff, dry_run=dry_run)

    found = with_platform(settings, go)
    if found is None:
        typer.echo("another reconciliation is running (a server's daily one?); try later", err=True)
        raise typer.Exit(1)
    results = found
    for r in results:
        if r.error is not None:
            typer.echo(f"{r.project_id}: reconciliation failed ({r.error}); see the log", err=True)
            continue
        if r.missing:
            more = f" (and {r.missing_unchecked} more not checked)" if r.missing_unchecked else ""
            typer.echo(
                f"{r.project_id}: {len(r.missing)} item image(s) missing from the store{more}: "
                + " ".join(r.missing[:20]),
                err=True,
            )
        if r.import_running:
            typer.echo(f"{r.project_id}: an import is running; its orphans wait for the next run")
        if dry_run:
            for blob_id in r.orphans:
                typer.echo(f"{r.project_id}: {blob_id}")
        elif r.deleted or r.left or r.incomplete_cleared:
            typer.echo(
                f"{r.project_id}: {r.deleted} orphan(s) deleted, {r.left} left for the next run, "
                f"{r.incomplete_cleared} unfinished write(s) cleared"
            )
    orphans = sum(len(r.orphans) for r in results)
    if dry_run:
        typer.echo(f"{orphans} orphan(s) in {len(results)} project(s); nothing deleted")
    else:
        typer.echo(
            f"{sum(r.deleted for r in results)} orphan(s) deleted, "
            f"{sum(r.left for r in results)} left for the next run, "
            f"{sum(r.incomplete_cleared for r in results)} unfinished write(s) cleared, "
            f"in {len(results)} project(s)"
        )
    if any(r.error is not None or r.missing for r in results):
        raise typer.Exit(1)
