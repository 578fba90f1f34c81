"""``labelvault`` commands: serve, migrate, init, and the administration groups."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import typer

from labelvault.cli import admin
from labelvault.cli.audit import audit_app
from labelvault.cli.export import export_app
from labelvault.cli.importer import import_command
from labelvault.cli.keys import keys_app
from labelvault.cli.remote import remote_app
from labelvault.cli.runtime import OPERATOR, fail, settings_or_fail, with_platform
from labelvault.cli.storage import storage_app
from labelvault.cli.worker import worker_command
from labelvault.kernel.errors import ConflictError, LabelVaultError
from labelvault.platform import Platform, prepare_database

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="LabelVault: secure, multi-tenant AI training-data platform.",
)
app.add_typer(admin.org_app, name="org")
app.add_typer(admin.project_app, name="project")
app.add_typer(admin.user_app, name="user")
app.add_typer(admin.member_app, name="member")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(export_app, name="export")
app.add_typer(remote_app, name="remote")
app.add_typer(storage_app, name="storage")
app.command("worker")(worker_command)
app.command("import")(import_command)

DataDir = typer.Option(None, "--data-dir", help="data directory (LABELVAULT_DATA_DIR)")


@app.command()
def migrate(data_dir: Path | None = DataDir) -> None:
    """Create or upgrade roles, the control plane and every project schema."""
    settings = settings_or_fail(data_dir=data_dir)
    try:
        _, report = prepare_database(settings)
    except LabelVaultError as exc:
        fail(exc.message)
    assert report is not None
    typer.echo(
        f"control plane at revision {report.control_revision}; "
        f"{report.projects_migrated} project schemas at version {report.project_version}"
    )


@app.command()
def init(
    email: str = typer.Option("admin@localhost", help="email of the first system administrator"),
    data_dir: Path | None = DataDir,
) -> None:
    """Create the first system administrator and print its one-time password (once)."""
    settings = settings_or_fail(data_dir=data_dir)
    from labelvault import identity

    async def go(platform: Platform) -> tuple[str, str]:
        existing = await admin.count_system_admins(platform)
        if existing:
            raise ConflictError(
                "a system administrator already exists; `labelvault init` "
                "only creates the first one"
            )
        password = identity.one_time_password()
        user = await identity.create_user(
            platform.db,
            OPERATOR,
            email=email,
            org_id=None,
            password=password,
            is_system_admin=True,
            must_change=True,
        )
        return user.email, password

    user_email, password = with_platform(settings, go)
    typer.echo(f"system administrator: {user_email}")
    typer.echo(f"one-time password:    {password}")
    typer.echo(
        "It is shown only now. Sign in, then choose a new password and set up an "
        "authenticator app (required for administrators)."
    )


@app.command()
def serve(
    host: str | None = typer.Option(None, help="address to listen on (LABELVAULT_HOST)"),
    port: int | None = typer.Option(None, help="port (LABELVAULT_PORT)"),
    workers: int | None = typer.Option(
        None, help="server processes, one core each (LABELVAULT_WORKERS, default 1)"
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Start the HTTPS server (TLS 1.3 only); on the embedded default, PostgreSQL too."""
    import uvicorn

    from labelvault.api.app import create_app
    from labelvault.server import (
        build_ssl_context,
        check_port_free,
        event_loop_factory,
        listening_socket,
        run_workers,
        uvicorn_config,
    )

    settings = settings_or_fail(host=host, port=port, workers=workers, data_dir=data_dir)
    try:
        check_port_free(settings.host, settings.port)
        context = build_ssl_context(settings)
        target, report = prepare_database(settings)
        sock = listening_socket(settings.host, settings.port) if settings.workers > 1 else None
        # one process: built here, so configuration errors are reported before listening
        single = create_app(Platform.create(settings, target)) if sock is None else None
    except LabelVaultError as exc:
        fail(exc.message)
    shown_host = (
        "localhost" if settings.host in ("127.0.0.1", "::1", "localhost") else settings.host
    )
    url = settings.public_url or f"https://{shown_host}:{settings.port}"
    typer.echo(f"LabelVault is listening on {url}")
    where = (
        f"embedded PostgreSQL in {settings.data_dir / 'pg'}"
        if target.embedded
        else "external PostgreSQL"
    )
    revision = report.control_revision if report else "?"
    typer.echo(f"  database: {where} (control plane revision {revision})")
    if settings.workers > 1:
        typer.echo(f"  workers: {settings.workers} processes")
    typer.echo(
        "  first sign-in: run `labelvault init` once to create the system administrator;"
        " it prints a one-time password."
    )

    def serve_one(index: int) -> None:
        # each process has its own pools, keys cache and event loop; the first one also signs
        # audit checkpoints and runs the in-process job worker
        application = single or create_app(Platform.create(settings, target), primary=index == 0)
        server = uvicorn.Server(uvicorn_config(application, settings, context, port=settings.port))
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(server.serve(sockets=[sock] if sock is not None else None))

    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: with the default action the
    # process would die there, skipping the atexit hook that stops the embedded PostgreSQL
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if sock is None:
        with contextlib.suppress(KeyboardInterrupt):
            serve_one(0)
        return
    code = run_workers(settings.workers, serve_one)
    sock.close()
    if code:
        fail("a server process ended unexpectedly; the others were stopped")


def main() -> None:
    app()
