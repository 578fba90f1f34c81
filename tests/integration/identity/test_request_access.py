"""The request path's one-statement lookups agree with the full path, and leave no context.

``token_project_access`` (``lv_control.token_access``) must give exactly the roles the full path
(``resolve_token`` + ``roles_in_project``) gives, and must step aside (None) whenever the full path
has something to record: a first use, a refusal. ``control_call`` statements run without any
tenant context, and the functions clear the context they set.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from tests.support.platform import SYSTEM, add_member, make_org, make_project, make_user, token_for

from labelvault import identity
from labelvault.access import Role
from labelvault.auth import parse_api_token
from labelvault.db.context import ControlContext, ProjectContext
from labelvault.identity.memberships import NO_ACCESS
from labelvault.identity.request_access import token_project_access
from labelvault.platform import Platform

_CONTEXT = (
    "SELECT current_setting('lv.user_id', true), current_setting('lv.org_id', true), "
    "current_setting('lv.system', true)"
)


@pytest.fixture
async def member(platform: Platform) -> tuple[uuid.UUID, uuid.UUID, object, str]:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    user = await make_user(platform, org.id)
    await add_member(platform, project.id, user, "manager")
    token = await token_for(platform, user, [project.id], max_role="manager")
    return org.id, project.id, user, token


async def test_first_use_takes_the_full_path_then_the_fast_lane_agrees_with_it(
    platform: Platform, member: tuple
) -> None:  # type: ignore[type-arg]
    _, project_id, user, token = member
    # never used: the full path records the first use, so the fast lane steps aside
    assert await token_project_access(platform.db, token, project_id) is None
    actor = await identity.resolve_token(platform.db, token)
    full = await identity.roles_in_project(platform.db, actor, project_id)
    fast = await token_project_access(platform.db, token, project_id, request_id="r-1")
    assert fast is not None
    fast_actor, fast_access = fast
    assert fast_access == full
    assert fast_access[0] == frozenset({Role.MANAGER})
    assert (fast_actor.user_id, fast_actor.token_id, fast_actor.request_id) == (
        user.id,
        actor.token_id,
        "r-1",
    )
    assert not fast_actor.is_system_admin and not fast_actor.is_org_admin


async def test_a_token_is_capped_at_its_maximum_role(platform: Platform) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    user = await make_user(platform, org.id, org_admin=True)
    await add_member(platform, project.id, user, "manager")
    token = await token_for(platform, user, [project.id], max_role="annotator")
    await identity.resolve_token(platform.db, token)  # first use recorded
    fast = await token_project_access(platform.db, token, project.id)
    assert fast is not None
    # a manager membership through an annotator token: no role; the org admin right: never
    assert fast[1][0] == frozenset()


async def test_other_projects_and_other_tenants_are_not_there(
    platform: Platform, member: tuple
) -> None:  # type: ignore[type-arg]
    org_id, _, _, token = member
    await identity.resolve_token(platform.db, token)
    sibling = await make_project(platform, org_id)  # same organization, not in the token
    other_org = await make_org(platform)
    foreign = await make_project(platform, other_org.id)
    for target in (sibling.id, foreign.id, uuid.uuid4()):
        fast = await token_project_access(platform.db, token, target)
        assert fast is not None
        assert fast[1] == NO_ACCESS


async def test_refused_tokens_take_the_full_path(platform: Platform, member: tuple) -> None:  # type: ignore[type-arg]
    _, project_id, _, token = member
    actor = await identity.resolve_token(platform.db, token)
    assert await token_project_access(platform.db, token, project_id) is not None
    # malformed and unknown tokens
    assert await token_project_access(platform.db, "lv_not-a-token", project_id) is None
    assert await token_project_access(platform.db, token[:-2] + "xx", project_id) is None
    # expired
    token_hash = parse_api_token(token)
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "UPDATE lv_control.api_tokens SET expires_at = now() - interval '1 second' "
            "WHERE token_hash = %s",
            [token_hash],
        )
    assert await token_project_access(platform.db, token, project_id) is None
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "UPDATE lv_control.api_tokens SET expires_at = now() + interval '1 day' "
            "WHERE token_hash = %s",
            [token_hash],
        )
    assert await token_project_access(platform.db, token, project_id) is not None
    # revoked: refused on the very next lookup
    assert actor.token_id is not None
    await identity.revoke_token(platform.db, SYSTEM, actor.token_id)
    assert await token_project_access(platform.db, token, project_id) is None


async def test_a_use_due_to_be_recorded_takes_the_full_path(
    platform: Platform, member: tuple
) -> None:  # type: ignore[type-arg]
    _, project_id, _, token = member
    await identity.resolve_token(platform.db, token)
    assert await token_project_access(platform.db, token, project_id) is not None
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "UPDATE lv_control.api_tokens SET last_used_at = now() - %s WHERE token_hash = %s",
            [dt.timedelta(minutes=5), parse_api_token(token)],
        )
    assert await token_project_access(platform.db, token, project_id) is None


async def test_the_lookup_functions_clear_the_context_they_set(
    platform: Platform, member: tuple
) -> None:  # type: ignore[type-arg]
    _, project_id, _, token = member
    await identity.resolve_token(platform.db, token)
    # even called (wrongly) inside a longer transaction, they leave no context behind
    async with platform.db.control_pool.connection() as conn, conn.transaction():
        await conn.execute(
            "SELECT * FROM lv_control.token_access(%s, %s)", [parse_api_token(token), project_id]
        )
        cur = await conn.execute(_CONTEXT)
        assert await cur.fetchone() == ("", "", "")
        await conn.execute("SELECT lv_control.project_member_ids(%s, 'manager')", [project_id])
        cur = await conn.execute(_CONTEXT)
        assert await cur.fetchone() == ("", "", "")
        cur = await conn.execute("SELECT count(*) FROM lv_control.projects")
        assert await cur.fetchone() == (0,)


async def test_a_single_call_statement_has_no_context(platform: Platform, member: tuple) -> None:  # type: ignore[type-arg]
    _, project_id, user, _ = member
    assert await platform.db.control_call("SELECT count(*) FROM lv_control.projects", []) == [(0,)]
    assert await platform.db.control_call(
        "SELECT count(*) FROM lv_control.memberships WHERE project_id = %s", [project_id]
    ) == [(0,)]
    assert await identity.project_member_ids(platform.db, project_id, "manager") == [user.id]
    assert await identity.project_member_ids(platform.db, project_id, "reviewer") == []


async def test_project_transactions_commit_roll_back_and_nest(platform: Platform) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    system = ProjectContext(uuid.uuid4(), "system")

    async def imports() -> int:
        async with platform.db.project_tx(project.id, system) as conn:
            cur = await conn.execute("SELECT count(*) FROM imports")
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    insert = "INSERT INTO imports (id, created_by, format) VALUES (gen_random_uuid(), %s, 'jsonl')"
    with pytest.raises(RuntimeError, match="boom"):
        async with platform.db.project_tx(project.id, system) as conn:
            await conn.execute(insert, [system.user_id])
            raise RuntimeError("boom")
    assert await imports() == 0
    async with platform.db.project_tx(project.id, system) as conn:
        cur = await conn.execute("SELECT current_setting('lv.role', true)")
        assert await cur.fetchone() == ("system",)
        await conn.execute(insert, [system.user_id])
        with pytest.raises(RuntimeError, match="inner"):
            async with conn.transaction():  # a savepoint inside the request's transaction
                await conn.execute(insert, [system.user_id])
                raise RuntimeError("inner")
    assert await imports() == 1
