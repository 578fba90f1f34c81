"""``labelvault keys``: rotate keys, finish rotations, show key status; ``project delete``.

* ``keys rotate --kek``: a new KEK in the provider, every data key re-wrapped; no data touched.
* ``keys rotate --project P`` (or ``--control``): a new data-key version, then every value and
  blob still on an old version is re-encrypted in batches (resumable: rerun after a crash and it
  continues), and the old versions nothing uses are destroyed.
* ``keys resume [--project P]``: finish every rotation still running (after a crash, an automatic
  rotation, or a grace period); safe to run from cron.
* ``keys status [--project P]``: versions, encryption counts, rotation progress.
* ``project delete --project P --reason TEXT``: crypto-shred and drop a project; prints the
  signed deletion receipt.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from labelvault.audit.record import audit_control
from labelvault.cli.admin import project_app
from labelvault.cli.runtime import OPERATOR, fail, settings_or_fail, with_platform
from labelvault.crypto import CONTROL_SCOPE, ROTATE_AFTER_ENCRYPTIONS
from labelvault.db.context import ControlContext
from labelvault.kernel.errors import LabelVaultError, NotFoundError
from labelvault.kernel.ids import parse_id
from labelvault.keys.receipts import DeletionReceipt
from labelvault.keys.rotation import (
    DEFAULT_BATCH_SIZE,
    RotationReport,
    key_status,
    pending_rotations,
    reencrypt_scope,
    rotate_scope,
)
from labelvault.platform import Platform
from labelvault.tenancy import service as tenancy

keys_app = typer.Typer(no_args_is_help=True, help="Encryption keys: rotation and status.")
DataDir = typer.Option(None, "--data-dir", help="data directory (LABELVAULT_DATA_DIR)")
BatchSize = typer.Option(
    DEFAULT_BATCH_SIZE, "--batch-size", min=1, max=100_000, help="rows per transaction"
)
RetireGrace = typer.Option(
    None,
    "--retire-grace",
    min=0.0,
    help="seconds an old version must have been retired before it is destroyed (default: the "
    "key cache TTL, so no server still encrypts with it)",
)
Wait = typer.Option(
    True,
    "--wait/--no-wait",
    help="sleep out the rest of the grace period instead of returning (then run "
    "`keys resume` later)",
)
# test hook: pause after each batch so a test can kill the job part-way
BatchDelay = typer.Option(0.0, "--batch-delay", hidden=True, min=0.0)
console = Console()


class _Bar:
    """A rich progress bar per column / blob table."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}

    def start(self, label: str, total: int) -> None:
        if label in self._tasks:
            self._progress.update(self._tasks[label], total=total, completed=0)
        else:
            self._tasks[label] = self._progress.add_task(label, total=total)

    def advance(self, label: str, rows: int) -> None:
        task = self._tasks.get(label)
        if task is not None:
            self._progress.advance(task, rows)

    def note(self, text: str) -> None:
        self._progress.console.print(text)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


async def _project_id(platform: Platform, project: str) -> uuid.UUID:
    try:
        return (await tenancy.get_project(platform.db, OPERATOR, parse_id(project))).id
    except NotFoundError:
        raise NotFoundError(f"project {project} not found (give its id)") from None


def _print_report(report: RotationReport) -> None:
    what = "control plane" if report.scope == CONTROL_SCOPE else f"project {report.scope}"
    verb = "resumed" if report.resumed else "ran"
    typer.echo(
        f"{what}: data key version {report.to_version}; {verb} {report.batches} batches, "
        f"re-encrypted {report.total_reencrypted} values/blobs"
    )
    for label, count in sorted(report.reencrypted.items()):
        if count:
            typer.echo(f"  {label}: {count}")
    for label, ids in sorted(report.failed.items()):
        typer.echo(
            f"  {label}: {len(ids)}+ values could not be decrypted (left as they are): "
            + ", ".join(ids)
        )
    if report.retired:
        typer.echo(f"  destroyed old versions: {', '.join(map(str, report.retired))}")
    if report.pending:
        pending = ", ".join(map(str, report.pending))
        if report.wait_s > 0:
            typer.echo(
                f"  nothing moved yet: servers may not have loaded the new key for "
                f"{report.wait_s:.0f} s more; run `labelvault keys resume` after that "
                f"(old versions {pending} stay until then)"
            )
        else:
            typer.echo(f"  old versions {pending} are still in use: run `labelvault keys resume`")
    if report.done:
        typer.echo("  rotation complete")


async def _audit(platform: Platform, action: str, **fields: Any) -> None:
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await audit_control(conn, OPERATOR, action, resource_type="key", **fields)


@keys_app.command("rotate")
def rotate(
    kek: bool = typer.Option(False, "--kek", help="rotate the key-encryption key(s)"),
    project: str | None = typer.Option(None, "--project", help="rotate this project's data key"),
    control: bool = typer.Option(False, "--control", help="rotate the control plane's data key"),
    batch_size: int = BatchSize,
    retire_grace: float | None = RetireGrace,
    wait: bool = Wait,
    batch_delay: float = BatchDelay,
    data_dir: Path | None = DataDir,
) -> None:
    """Rotate the KEK (--kek) or a data key (--project P / --control) and re-encrypt."""
    if sum([kek, project is not None, control]) != 1:
        fail("give exactly one of --kek, --project P, --control", 2)
    settings = settings_or_fail(data_dir=data_dir)

    if kek:

        async def go_kek(platform: Platform) -> tuple[int, int]:
            rotated, rewrapped = await platform.keys.rotate_kek()
            await _audit(
                platform,
                "keys.kek_rotate",
                resource_id=platform.keys.provider.name,
                details={"keks_rotated": rotated, "data_keys_rewrapped": rewrapped},
            )
            return rotated, rewrapped

        rotated, rewrapped = with_platform(settings, go_kek)
        typer.echo(
            f"rotated {rotated} KEK(s) in the key provider; re-wrapped {rewrapped} data key(s); "
            "no data was re-encrypted"
        )
        return

    async def go(platform: Platform) -> RotationReport:
        pid = None if control else await _project_id(platform, str(project))
        with _progress() as progress:
            report = await rotate_scope(
                platform.db,
                platform.keys,
                platform.blobs,
                pid,
                batch_size=batch_size,
                progress=_Bar(progress),
                retire_grace_s=retire_grace,
                batch_delay_s=batch_delay,
                wait=wait,
            )
        await _audit(
            platform,
            "keys.rotate",
            resource_id=report.scope,
            project_id=pid,
            details={
                "to_version": report.to_version,
                "reencrypted": report.total_reencrypted,
                "retired": ",".join(map(str, report.retired)),
                "done": report.done,
            },
        )
        return report

    _print_report(with_platform(settings, go))


@keys_app.command("resume")
def resume(
    project: str | None = typer.Option(None, "--project", help="only this project"),
    batch_size: int = BatchSize,
    retire_grace: float | None = RetireGrace,
    wait: bool = Wait,
    batch_delay: float = BatchDelay,
    data_dir: Path | None = DataDir,
) -> None:
    """Finish every rotation still running (after a crash or an automatic rotation)."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> list[RotationReport]:
        only = str(await _project_id(platform, project)) if project else None
        reports = []
        for scope in await pending_rotations(platform.db, only):
            pid = None if scope == CONTROL_SCOPE else uuid.UUID(scope)
            try:
                with _progress() as progress:
                    report = await reencrypt_scope(
                        platform.db,
                        platform.keys,
                        platform.blobs,
                        pid,
                        batch_size=batch_size,
                        progress=_Bar(progress),
                        retire_grace_s=retire_grace,
                        batch_delay_s=batch_delay,
                        wait=wait,
                    )
            except LabelVaultError as exc:  # e.g. a project being deleted: go on with the rest
                typer.echo(f"{scope}: skipped: {exc.message}", err=True)
                continue
            await _audit(
                platform,
                "keys.reencrypt",
                resource_id=scope,
                project_id=pid,
                details={
                    "to_version": report.to_version,
                    "reencrypted": report.total_reencrypted,
                    "retired": ",".join(map(str, report.retired)),
                    "done": report.done,
                },
            )
            reports.append(report)
        return reports

    reports = with_platform(settings, go)
    if not reports:
        typer.echo("no rotation is running")
    for report in reports:
        _print_report(report)


@keys_app.command("status")
def status(
    project: str | None = typer.Option(None, "--project", help="only this project"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    data_dir: Path | None = DataDir,
) -> None:
    """Data-key versions (no key material), encryption counts and rotation progress."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> tuple[Any, Any]:
        scope = str(await _project_id(platform, project)) if project else None
        return await key_status(platform.db, scope)

    versions, rotations = with_platform(settings, go)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "rotate_after_encryptions": ROTATE_AFTER_ENCRYPTIONS,
                    "versions": [
                        {
                            "scope": v.scope,
                            "version": v.version,
                            "state": v.state,
                            "kek_id": v.kek_id,
                            "encryptions": v.encryptions,
                            "created_at": v.created_at.isoformat(),
                            "retired_at": v.retired_at.isoformat() if v.retired_at else None,
                            "destroyed_at": v.destroyed_at.isoformat() if v.destroyed_at else None,
                        }
                        for v in versions
                    ],
                    "rotations": [
                        {
                            "scope": r.scope,
                            "to_version": r.to_version,
                            "state": r.state,
                            "reencrypted": r.reencrypted,
                            "batches": int(r.progress.get("batches", 0)),
                            "started_at": r.started_at.isoformat(),
                            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                        }
                        for r in rotations
                    ],
                },
                indent=2,
            )
        )
        return
    table = Table(
        "scope",
        "version",
        "state",
        "KEK",
        "encryptions",
        "of rotation limit",
        "created",
        "retired / destroyed",
    )
    for v in versions:
        share = f"{100 * v.encryptions / ROTATE_AFTER_ENCRYPTIONS:.4f}%"
        table.add_row(
            v.scope,
            str(v.version),
            v.state,
            v.kek_id,
            str(v.encryptions),
            share,
            _when(v.created_at),
            _when(v.destroyed_at or v.retired_at),
        )
    console.print(table)
    if rotations:
        rt = Table("scope", "to version", "state", "re-encrypted", "batches", "started", "finished")
        for r in rotations:
            rt.add_row(
                r.scope,
                str(r.to_version),
                r.state,
                str(r.reencrypted),
                str(r.progress.get("batches", 0)),
                _when(r.started_at),
                _when(r.finished_at),
            )
        console.print(rt)
    running = [r for r in rotations if r.state == "running"]
    if running:
        typer.echo(f"{len(running)} rotation(s) running: `labelvault keys resume` finishes them")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


@project_app.command("delete")
def project_delete(
    project: str = typer.Option(..., "--project", help="project id"),
    reason: str = typer.Option(..., "--reason", help="why (recorded in the audit trail)"),
    yes: bool = typer.Option(False, "--yes", help="do not ask for confirmation"),
    data_dir: Path | None = DataDir,
) -> None:
    """Delete a project for good: shred its keys, purge its blobs, drop its schema and role.
    Prints the signed deletion receipt. Irreversible."""
    from labelvault.tenancy.deletion import delete_project

    settings = settings_or_fail(data_dir=data_dir)
    try:
        pid = parse_id(project, what="project")
    except NotFoundError as exc:
        fail(exc.message)
    if not yes:
        if not sys.stdin.isatty():  # a script or a pipe: nobody to ask, so never by default
            fail("deleting a project is irreversible: pass --yes when not at a terminal")
        typer.confirm(
            f"Destroy project {pid} and every copy of its data (irreversible)?", abort=True
        )

    async def go(platform: Platform) -> DeletionReceipt:
        return await delete_project(platform, OPERATOR, pid, reason)

    receipt = with_platform(settings, go)
    typer.echo(json.dumps(receipt.to_json(), indent=2, ensure_ascii=False))
