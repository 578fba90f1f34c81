"""``labelvault audit``: verify the trail, checkpoint it, export it, show the public key."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

import typer

from labelvault.cli.runtime import OPERATOR, fail, settings_or_fail, with_platform
from labelvault.kernel.errors import LabelVaultError
from labelvault.kernel.ids import parse_id
from labelvault.platform import Platform, prepare_database

audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail.")
DataDir = typer.Option(None, "--data-dir", help="data directory (LABELVAULT_DATA_DIR)")
PublicKey = typer.Option(
    None,
    "--public-key",
    help="verifier key (name+id+key) or @FILE; repeatable. With it the database is not "
    "trusted for the key.",
)


@audit_app.command("verify")
def verify(
    project: str | None = typer.Option(None, "--project", help="only this project's chain (id)"),
    checkpoints: Path | None = typer.Option(
        None, "--checkpoints", help="external checkpoint directory (<dir>/<chain id>/<size>.note)"
    ),
    dsn: str | None = typer.Option(
        None,
        "--dsn",
        envvar="LABELVAULT_AUDIT_VERIFY_DSN",
        help="database to read (superuser or BYPASSRLS role); default: the configured one",
    ),
    public_key: list[str] | None = PublicKey,
    region: str | None = typer.Option(None, "--region", help="expected region in the origins"),
    check_bodies: bool = typer.Option(False, "--check-bodies", help="also parse every body"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable report"),
    data_dir: Path | None = DataDir,
) -> None:
    """Verify every audit chain (hash links, signed checkpoints, truncation). Exit 0 only if
    everything verifies."""
    from labelvault.audit.dbverify import format_text, load_public_keys, verify_database

    try:
        keys = load_public_keys(public_key) if public_key else None
        project_id = parse_id(project, what="project") if project else None
        if dsn is None:
            settings = settings_or_fail(data_dir=data_dir)
            target, _ = prepare_database(settings, run_migrations=False)
            dsn = target.owner_dsn
            region = region or settings.region
        report = verify_database(
            dsn,
            project=project_id,
            checkpoint_dir=checkpoints,
            public_keys=keys,
            region=region,
            check_bodies=check_bodies,
        )
    except LabelVaultError as exc:
        fail(exc.message, 2)
    typer.echo(report.to_json() if as_json else format_text(report))
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("verify-export")
def verify_export_cmd(
    file: Path = typer.Argument(..., help="an export (JSON Lines)"),
    public_key: list[str] = PublicKey,
    as_json: bool = typer.Option(False, "--json", help="machine-readable report"),
) -> None:
    """Verify an exported trail offline with the deployment's public key."""
    from labelvault.audit.dbverify import DatabaseReport, format_text, load_public_keys
    from labelvault.audit.export import verify_export

    try:
        if not public_key:
            fail("--public-key is required", 2)
        keys = load_public_keys(public_key)
        if not file.is_file():
            fail(f"{file} is not a file", 2)
        report = verify_export(file, keys)
    except LabelVaultError as exc:
        fail(exc.message, 2)
    whole = DatabaseReport(chains=[report])
    typer.echo(whole.to_json() if as_json else format_text(whole))
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("checkpoint")
def checkpoint(data_dir: Path | None = DataDir) -> None:
    """Sign a checkpoint of every chain that grew, now."""
    from labelvault.audit.checkpointer import checkpoint_all

    settings = settings_or_fail(data_dir=data_dir)
    results = with_platform(settings, checkpoint_all)
    for r in results:
        where = f" -> {r.file}" if r.file else ""
        typer.echo(f"{r.chain_id}: size {r.size}{where}")
    typer.echo(f"{len(results)} checkpoint(s) signed")


@audit_app.command("public-key")
def public_key_cmd(data_dir: Path | None = DataDir) -> None:
    """Print the checkpoint verifier key (give it to auditors; keep a copy off this host)."""
    from labelvault.audit.signing import public_verifier_key

    settings = settings_or_fail(data_dir=data_dir)
    typer.echo(with_platform(settings, public_verifier_key))


@audit_app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="file to write (JSON Lines); '-' for stdout"),
    project: str | None = typer.Option(None, "--project", help="project id; default: control"),
    data_dir: Path | None = DataDir,
) -> None:
    """Export a chain with the checkpoints that verify it (the export is audited)."""
    from labelvault.access import Role
    from labelvault.audit import trail

    settings = settings_or_fail(data_dir=data_dir)
    project_id: uuid.UUID | None = parse_id(project, what="project") if project else None

    async def go(platform: Platform) -> int:
        if project_id is None:
            lines = await trail.export_control_trail(platform, OPERATOR)
        else:
            lines = await trail.export_project_trail(
                platform,
                OPERATOR,
                frozenset({Role.SYSTEM_ADMIN}),
                project_id,
                reason=trail.OPERATOR_REASON,
            )
        count = 0
        if str(out) == "-":
            async for chunk in lines:
                sys.stdout.buffer.write(chunk)
                count += chunk.count(b"\n")
            sys.stdout.buffer.flush()
            return count
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in lines:
                    fh.write(chunk)
                    count += chunk.count(b"\n")
            os.replace(tmp, out)
        except BaseException:
            if os.path.exists(tmp):  # noqa: ASYNC240 - cleanup on failure only
                os.unlink(tmp)
            raise
        return count

    count = with_platform(settings, go)
    if str(out) != "-":
        typer.echo(json.dumps({"file": str(out), "lines": count}))
