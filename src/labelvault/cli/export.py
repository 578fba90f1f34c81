"""``labelvault export status --project P [--export E]``: the exports of a project and their
progress, read by the operator (states, counts, manifest hashes; never content).
``labelvault export sweep``: expire old bundles now."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from labelvault.access.scope import ProjectScope
from labelvault.cli.runtime import OPERATOR, settings_or_fail, with_platform
from labelvault.export import service
from labelvault.kernel.ids import parse_id
from labelvault.platform import Platform

export_app = typer.Typer(no_args_is_help=True, help="Exports: state and progress, retention.")


@export_app.command("status")
def status(
    project: str = typer.Option(..., "--project", help="project id"),
    export: str | None = typer.Option(None, "--export", help="one export id"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="data directory (LABELVAULT_DATA_DIR)"
    ),
) -> None:
    """Show the exports of a project (newest first), or one export."""
    settings = settings_or_fail(data_dir=data_dir)
    scope = ProjectScope(
        parse_id(project, what="project"),
        OPERATOR,
        "system",
        privileged_reason="operator command line",
    )

    async def go(platform: Platform) -> list[dict[str, object]]:
        if export is not None:
            return [await service.get_export(platform.db, scope, export)]
        return await service.list_exports(platform.db, scope, limit=200)

    rows = with_platform(settings, go, migrate=False)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(
            f"{r['export_id']}  {r['format']:<8} {r['state']:<17} "
            f"records={r['item_count'] if r['item_count'] is not None else '-'}  "
            f"manifest={r['manifest_sha256'] or '-'}"
            + (f"  until={r['expires_at']}" if r["state"] == "ready" and r["expires_at"] else "")
        )


@export_app.command("sweep")
def sweep(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="data directory (LABELVAULT_DATA_DIR)"
    ),
) -> None:
    """Expire the ready exports past their retention and delete the bundles nothing needs,
    now (the server does it every hour). Exit 1 if a project could not be swept."""
    from labelvault.export.expiry import sweep_all

    settings = settings_or_fail(data_dir=data_dir)
    results = with_platform(settings, sweep_all)
    for r in results:
        if r.error is not None:
            typer.echo(f"{r.project_id}: the sweep failed ({r.error}); see the log", err=True)
        elif r.expired or r.bundles_deleted or r.bundles_left:
            typer.echo(
                f"{r.project_id}: {r.expired} expired, {r.bundles_deleted} bundle(s) deleted, "
                f"{r.bundles_left} left for the next sweep"
            )
    typer.echo(
        f"{sum(r.expired for r in results)} export(s) expired, "
        f"{sum(r.bundles_deleted for r in results)} bundle(s) deleted, "
        f"{sum(r.bundles_left for r in results)} left for the next sweep"
    )
    if any(r.error is not None for r in results):
        raise typer.Exit(1)
