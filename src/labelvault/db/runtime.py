"""Connection pools of a running server and the transactions that carry tenant context.

* The control pool connects as the runtime role ``lv_app`` (owns nothing, NOBYPASSRLS).
* Each project gets its own small pool, authenticated as that project's own role with its own
  credential; pools are created on first use and kept in a bounded LRU, so a request costs no
  extra connection set-up. SQL on project A's connections cannot name project B's schema.
* ``control_tx`` / ``project_tx`` open a transaction and set the acting user and role with
  ``set_config(..., true)``; the context dies with the transaction.
* ``control_call`` runs ONE statement as its own transaction (autocommit), for the control-plane
  functions that set their own context and clear it before returning (the request path's token
  and membership lookups: one round trip instead of four to six).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, LiteralString

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from labelvault.db.catalog import assert_safe_runtime_role
from labelvault.db.context import (
    SET_CONTROL_CONTEXT,
    SET_PROJECT_CONTEXT,
    ControlContext,
    ProjectContext,
)
from labelvault.db.dsn import derive_dsn
from labelvault.db.names import RUNTIME_ROLE, project_role
from labelvault.logs import get_logger

CredentialLoader = Callable[[uuid.UUID], Awaitable[str]]
# The request path's statements are prepared after a few uses (psycopg) and looked up by key;
# under row-level security each carries every policy of its table, and PostgreSQL kept
# choosing a fresh custom plan at every execution (planning was most of a task fetch's cost).
# Their plans do not depend on the parameter values, so prepared statements plan once per
# connection. One-off statements are planned with their values, as always.
GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan"
log = get_logger(__name__)


# one statement and its parameters
Statement = tuple[LiteralString, Sequence[Any]]


@asynccontextmanager
async def _transaction(
    conn: AsyncConnection[Any],
    set_context: LiteralString,
    params: list[str],
    first: Sequence[Statement] = (),
) -> AsyncIterator[list[list[dict[str, Any]]]]:
    """A transaction whose first statement sets the tenant context. BEGIN, the context and the
    ``first`` statements go to the server together (one pipelined round trip; an error in any
    of them is raised here); the body then runs as usual and the transaction commits, or rolls
    back on any exception. Yields the rows of each ``first`` statement."""
    async with conn.pipeline():
        await conn.execute(set_context, params)
        cursors = [await conn.cursor(row_factory=dict_row).execute(*st) for st in first]
    results = [await cur.fetchall() for cur in cursors]
    try:
        yield results
    except BaseException:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
        raise
    await conn.commit()  # a no-op when the body ended with commit_with


async def commit_with(conn: AsyncConnection[Any], statements: Sequence[Statement]) -> None:
    """End the transaction: its last statements and COMMIT in one round trip (pipeline
    mode). Any error is raised here and nothing commits. Only for statements whose results
    the caller does not need to look at before committing."""
    async with conn.pipeline():
        for statement, params in statements:
            await conn.execute(statement, params)
        await conn.commit()


class ProjectPools:
    """A bounded LRU of per-project pools."""

    def __init__(
        self,
        owner_dsn: str,
        dbname: str | None,
        loader: CredentialLoader,
        *,
        max_projects: int,
        max_conns: int,
    ) -> None:
        self._owner_dsn = owner_dsn
        self._dbname = dbname
        self._loader = loader
        self._max_projects = max_projects
        self._max_conns = max_conns
        self._pools: OrderedDict[uuid.UUID, AsyncConnectionPool] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(self, project_id: uuid.UUID) -> AsyncConnectionPool:
        pool = self._pools.get(project_id)
        if pool is not None:
            self._pools.move_to_end(project_id)
            return pool
        async with self._lock:
            pool = self._pools.get(project_id)
            if pool is not None:
                return pool
            password = await self._loader(project_id)
            dsn = derive_dsn(
                self._owner_dsn,
                user=project_role(project_id),
                password=password,
                dbname=self._dbname,
            )
            pool = AsyncConnectionPool(
                dsn,
                min_size=0,
                max_size=self._max_conns,
                open=False,
                name=f"project-{project_id.hex[:8]}",
                kwargs={"autocommit": False, "options": GENERIC_PLANS},
                timeout=10,
            )
            await pool.open(wait=False)
            self._pools[project_id] = pool
            while len(self._pools) > self._max_projects:
                _, old = self._pools.popitem(last=False)
                await old.close()
            return pool

    async def forget(self, project_id: uuid.UUID) -> None:
        """Close a project's pool (credential rotated, project deleted)."""
        async with self._lock:
            pool = self._pools.pop(project_id, None)
        if pool is not None:
            await pool.close()

    async def close(self) -> None:
        async with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            await pool.close()


class RuntimeDatabase:
    def __init__(
        self,
        *,
        owner_dsn: str,
        app_password: str,
        dbname: str | None,
        credential_loader: CredentialLoader | None = None,
        control_pool_max: int = 10,
        project_pool_max: int = 64,
        project_conn_max: int = 4,
    ) -> None:
        self.app_dsn = derive_dsn(
            owner_dsn, user=RUNTIME_ROLE, password=app_password, dbname=dbname
        )
        self.control_pool = AsyncConnectionPool(
            self.app_dsn,
            min_size=1,
            max_size=control_pool_max,
            open=False,
            name="control",
            kwargs={"autocommit": False, "options": GENERIC_PLANS},
            timeout=10,
        )
        # each statement its own transaction: only for control_call's single statements
        self.call_pool = AsyncConnectionPool(
            self.app_dsn,
            min_size=1,
            max_size=control_pool_max,
            open=False,
            name="control-call",
            kwargs={"autocommit": True, "options": GENERIC_PLANS},
            timeout=10,
        )
        self._owner_dsn = owner_dsn
        self._dbname = dbname
        self._loader = credential_loader
        self._project_pool_max = project_pool_max
        self._project_conn_max = project_conn_max
        self._projects: ProjectPools | None = None
        self._dirty: set[uuid.UUID] = set()
        self._written: set[uuid.UUID] = set()

    def set_credential_loader(self, loader: CredentialLoader) -> None:
        self._loader = loader

    @property
    def projects(self) -> ProjectPools:
        if self._projects is None:
            if self._loader is None:
                raise RuntimeError("no project credential loader configured")
            self._projects = ProjectPools(
                self._owner_dsn,
                self._dbname,
                self._loader,
                max_projects=self._project_pool_max,
                max_conns=self._project_conn_max,
            )
        return self._projects

    async def open(self) -> None:
        await self.control_pool.open(wait=True, timeout=15)
        async with self.control_pool.connection() as conn:
            await assert_safe_runtime_role(conn)
        await self.call_pool.open(wait=True, timeout=15)

    async def close(self) -> None:
        if self._projects is not None:
            await self._projects.close()
        await self.call_pool.close()
        await self.control_pool.close()

    @asynccontextmanager
    async def control_tx(self, ctx: ControlContext) -> AsyncIterator[AsyncConnection]:
        async with (
            self.control_pool.connection() as conn,
            _transaction(conn, SET_CONTROL_CONTEXT, ctx.params()),
        ):
            yield conn

    async def control_call(
        self, statement: LiteralString, params: list[Any], *, row_factory: Any = None
    ) -> list[Any]:
        """Run one statement as its own transaction and return its rows. Meant for the
        control-plane functions that set (and clear) their own context: a plain query here would
        run without any context and see nothing."""
        async with self.call_pool.connection() as conn:
            cursor = conn.cursor(row_factory=row_factory) if row_factory else conn.cursor()
            cur = await cursor.execute(statement, params)
            return await cur.fetchall()

    @asynccontextmanager
    async def project_tx(
        self, project_id: uuid.UUID, ctx: ProjectContext, *, mark_dirty: bool = True
    ) -> AsyncIterator[AsyncConnection]:
        async with self.project_tx_first(project_id, ctx, (), mark_dirty=mark_dirty) as (conn, _):
            yield conn

    @asynccontextmanager
    async def project_tx_first(
        self,
        project_id: uuid.UUID,
        ctx: ProjectContext,
        first: Sequence[Statement],
        *,
        mark_dirty: bool = True,
    ) -> AsyncIterator[tuple[AsyncConnection, list[list[dict[str, Any]]]]]:
        """``project_tx`` whose first statements travel with BEGIN and the context; yields the
        connection and each statement's rows (as dicts)."""
        pool = await self.projects.get(project_id)
        async with (
            pool.connection() as conn,
            _transaction(conn, SET_PROJECT_CONTEXT, ctx.params(), first) as results,
        ):
            yield conn, results
        if mark_dirty:  # it may have appended audit events: the sealer chains them soon
            self.mark_dirty(project_id)

    def mark_dirty(self, project_id: uuid.UUID) -> None:
        """The project may have unsealed audit events: the sealer looks at it on its next run,
        and the checkpointer (:meth:`take_written_projects`) on its next one."""
        self._dirty.add(project_id)
        self._written.add(project_id)

    def take_dirty_projects(self) -> set[uuid.UUID]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    def take_written_projects(self) -> set[uuid.UUID]:
        """The projects this process may have appended audit events to since the last call."""
        written, self._written = self._written, set()
        return written


__all__ = ["ProjectPools", "RuntimeDatabase", "Statement", "commit_with", "dict_row"]
