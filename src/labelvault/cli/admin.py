"""Administration commands run by an operator on the server host (system context, audited)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from labelvault import identity
from labelvault.cli.runtime import OPERATOR, settings_or_fail, with_platform
from labelvault.db.context import ControlContext
from labelvault.kernel.errors import NotFoundError
from labelvault.kernel.ids import parse_id
from labelvault.platform import Platform
from labelvault.tenancy import service as tenancy
from labelvault.tenancy.models import Organization, Project

org_app = typer.Typer(no_args_is_help=True, help="Organizations (clients).")
project_app = typer.Typer(no_args_is_help=True, help="Projects: one schema and role each.")
user_app = typer.Typer(no_args_is_help=True, help="User accounts.")
member_app = typer.Typer(no_args_is_help=True, help="Project memberships and roles.")
DataDir = typer.Option(None, "--data-dir", help="data directory (LABELVAULT_DATA_DIR)")
console = Console()


async def count_system_admins(platform: Platform) -> int:
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM lv_control.users WHERE is_system_admin AND status = 'active'"
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _org_id(platform: Platform, org: str) -> uuid.UUID:
    return (await tenancy.get_organization(platform.db, OPERATOR, org)).id


@org_app.command("create")
def org_create(
    name: str,
    region: str = typer.Option(
        None, help="data region (default: this deployment's LABELVAULT_REGION)"
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Create an organization."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> Organization:
        return await tenancy.create_organization(
            platform.db, OPERATOR, name=name, region=region or settings.region
        )

    org = with_platform(settings, go)
    typer.echo(f"organization {org.name} created: {org.id} (region {org.region})")


@org_app.command("list")
def org_list(data_dir: Path | None = DataDir) -> None:
    settings = settings_or_fail(data_dir=data_dir)
    orgs = with_platform(settings, lambda p: tenancy.list_organizations(p.db, OPERATOR))
    table = Table("id", "name", "region", "status")
    for o in orgs:
        table.add_row(str(o.id), o.name, o.region, o.status)
    console.print(table)


@project_app.command("create")
def project_create(
    org: str = typer.Option(..., "--org", help="organization name or id"),
    name: str = typer.Option(..., "--name", help="project name"),
    region: str = typer.Option(None, help="data region (default: the organization's)"),
    data_dir: Path | None = DataDir,
) -> None:
    """Create a project: its own schema, database role and credential."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> Project:
        org_id = await _org_id(platform, org)
        return await tenancy.create_project(
            platform.db, platform.sealer, OPERATOR, org_id=org_id, name=name, region=region
        )

    project = with_platform(settings, go)
    typer.echo(f"project {project.name} created: {project.id}")


@project_app.command("list")
def project_list(org: str = typer.Option(None, "--org"), data_dir: Path | None = DataDir) -> None:
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> list[Project]:
        org_id = await _org_id(platform, org) if org else None
        return await tenancy.list_projects(platform.db, OPERATOR, org_id=org_id)

    table = Table("id", "organization", "name", "region", "status")
    for p in with_platform(settings, go):
        table.add_row(str(p.id), str(p.org_id), p.name, p.region, p.status)
    console.print(table)


@user_app.command("create")
def user_create(
    email: str,
    org: str = typer.Option(..., "--org", help="organization name or id"),
    name: str = typer.Option("", "--name", help="display name"),
    org_admin: bool = typer.Option(False, "--org-admin", help="organization administrator"),
    data_dir: Path | None = DataDir,
) -> None:
    """Create a user with a one-time password (printed once, changed at first sign-in)."""
    settings = settings_or_fail(data_dir=data_dir)
    password = identity.one_time_password()

    async def go(platform: Platform) -> identity.User:
        org_id = await _org_id(platform, org)
        return await identity.create_user(
            platform.db,
            OPERATOR,
            email=email,
            org_id=org_id,
            display_name=name,
            password=password,
            is_org_admin=org_admin,
            must_change=True,
        )

    user = with_platform(settings, go)
    typer.echo(f"user {user.email} created: {user.id}")
    typer.echo(f"one-time password: {password}")


@user_app.command("disable")
def user_disable(email: str, data_dir: Path | None = DataDir) -> None:
    """Disable a user: every session ends and every token is revoked at once."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> identity.User:
        user = await identity.find_user_by_email(platform.db, OPERATOR, email)
        return await identity.set_user_status(platform.db, OPERATOR, user.id, disabled=True)

    user = with_platform(settings, go)
    typer.echo(f"user {user.email} disabled")


@user_app.command("enable")
def user_enable(email: str, data_dir: Path | None = DataDir) -> None:
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> identity.User:
        user = await identity.find_user_by_email(platform.db, OPERATOR, email)
        return await identity.set_user_status(platform.db, OPERATOR, user.id, disabled=False)

    typer.echo(f"user {with_platform(settings, go).email} enabled")


@user_app.command("reset-mfa")
def user_reset_mfa(email: str, data_dir: Path | None = DataDir) -> None:
    """Remove a user's second factor (lost device); they enrol again at next sign-in."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> None:
        user = await identity.find_user_by_email(platform.db, OPERATOR, email)
        await identity.reset_mfa(platform.db, OPERATOR, user.id)

    with_platform(settings, go)
    typer.echo(f"second factor of {email} reset")


@user_app.command("unlock")
def user_unlock(email: str, data_dir: Path | None = DataDir) -> None:
    """Lift the sign-in lock placed after repeated failures."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> None:
        user = await identity.find_user_by_email(platform.db, OPERATOR, email)
        await identity.lift_sign_in_lock(platform.db, OPERATOR, user)

    with_platform(settings, go)
    typer.echo(f"sign-in lock of {email} lifted")


@user_app.command("access-review")
def user_access_review(
    org: str = typer.Option(..., "--org"), data_dir: Path | None = DataDir
) -> None:
    """Who can reach which project with what role, last activity and MFA status."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> list[dict[str, object]]:
        return await identity.access_review(platform.db, OPERATOR, await _org_id(platform, org))

    table = Table("user", "status", "project", "role", "last activity", "MFA", "SSO")
    for r in with_platform(settings, go):
        seen = [d for d in (r["last_session"], r["last_token_use"]) if isinstance(d, dt.datetime)]
        last = max(seen, default=None)
        table.add_row(
            str(r["email"]),
            str(r["status"]),
            str(r["project_name"] or "-"),
            str(r["role"] or ("org admin" if r["is_org_admin"] else "-")),
            str(last or "never"),
            "yes" if r["mfa"] else "no",
            "yes" if r["sso_linked"] else "no",
        )
    console.print(table)


async def _project(platform: Platform, project: str) -> uuid.UUID:
    try:
        return (await tenancy.get_project(platform.db, OPERATOR, parse_id(project))).id
    except NotFoundError:
        raise NotFoundError(f"project {project} not found (give its id)") from None


@member_app.command("set")
def member_set(
    project: str = typer.Option(..., "--project", help="project id"),
    email: str = typer.Option(..., "--user", help="user email"),
    role: str = typer.Option(..., "--role", help="annotator | reviewer | manager | data_owner"),
    data_dir: Path | None = DataDir,
) -> None:
    """Give a user a role in a project (replacing any previous role there)."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> identity.Membership:
        user = await identity.find_user_by_email(platform.db, OPERATOR, email)
        return await identity.set_membership(
            platform.db,
            OPERATOR,
            project_id=await _project(platform, project),
            user_id=user.id,
            role=role,
        )

    m = with_platform(settings, go)
    typer.echo(f"{email} is {m.role} in project {m.project_id}")


@member_app.command("remove")
def member_remove(
    project: str = typer.Option(..., "--project"),
    email: str = typer.Option(..., "--user"),
    data_dir: Path | None = DataDir,
) -> None:
    """Remove a user from a project; takes effect on their next request."""
    settings = settings_or_fail(data_dir=data_dir)

    async def go(platform: Platform) -> None:
        user = await identity.find_user_by_email(platform.db, OPERATOR, email)
        await identity.remove_membership(
            platform.db, OPERATOR, project_id=await _project(platform, project), user_id=user.id
        )

    with_platform(settings, go)
    typer.echo(f"{email} removed from project {project}")
