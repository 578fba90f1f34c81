"""Re-encryption after a data-key rotation: move every value and blob to the current version,
then destroy the versions nothing uses any more.

``KeyService.rotate(scope)`` starts a new data-key version for new writes and records a
``lv_control.key_rotations`` row (``running``) in the same transaction; automatic rotation (a
key past ``ROTATE_AFTER_ENCRYPTIONS``) does the same. :func:`reencrypt_scope` is the job that
finishes such a rotation, for a project (the columns and blobs of
:data:`labelvault.keys.columns.PROJECT_COLUMNS` / ``PROJECT_BLOBS``) or the control plane
(``CONTROL_COLUMNS``):

0. Grace: nothing is moved until the rotation is older than the grace period (the key cache
   TTL by default). Every process loads keyrings again within that TTL, so by then every server
   can read the new version (readers first) and none still encrypts with its cached old one.
   With ``wait=False`` the job returns at once, reporting how long is left; rerun it then.
1. Columns: in batches (``batch_size`` rows per transaction, as ``system`` on the project's own
   role), keyset-ordered by row id, selecting only values whose header names another key version
   (``FOR UPDATE``, so a concurrent writer is never overwritten); each value is peeked
   (:func:`peek_key_version`), decrypted under its own context and encrypted under the current
   key. The cursor of every column is saved in ``key_rotations.progress`` after each batch: a
   rerun after a crash continues where it stopped, and values already on the new version are
   skipped by their header anyway.
2. Blobs: every referenced blob's header is peeked (:func:`peek_blob_key_version`); one on an
   old version is decrypted and re-encrypted as a stream and replaced atomically under the same
   id (blob ids are never reused for other content).
3. Verification: the versions still in use are read from the column headers (one scan) and the
   blob headers seen. If an old version is still used (written during the pass) the pass is
   repeated, at most :data:`MAX_PASSES` times.
4. Retirement: the retired versions nothing uses are destroyed (``KeyService.retire_unused``)
   and the rotation is marked ``done``.

The row id in a value's context is the id column's PostgreSQL text form (``str(uuid)`` for a
uuid, ``"true"`` for the one-row ``settings`` table): domains must encrypt with that same form.

A value that fails to decrypt (tampered, or on a destroyed version) is reported and left as it is;
its version then stays in use and is not destroyed.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from labelvault.crypto import (
    CONTROL_SCOPE,
    CryptoError,
    DataDestroyedError,
    DecryptionError,
    peek_blob_key_version,
    peek_key_version,
    scope_of,
)
from labelvault.crypto.blobs import BLOB_HEADER_BYTES
from labelvault.db.context import ControlContext, ProjectContext
from labelvault.db.names import CONTROL_SCHEMA, project_schema
from labelvault.db.runtime import RuntimeDatabase
from labelvault.kernel.errors import ConflictError
from labelvault.keys.columns import CONTROL_COLUMNS, PROJECT_BLOBS, PROJECT_COLUMNS
from labelvault.keys.service import KeyService
from labelvault.keys.values import ProjectCipher, project_cipher
from labelvault.storage import BlobNotFoundError, BlobStore

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_PASSES",
    "KeyVersionStatus",
    "ProgressSink",
    "RotationReport",
    "RotationStatus",
    "key_status",
    "pending_rotations",
    "reencrypt_scope",
    "rotate_scope",
]

DEFAULT_BATCH_SIZE = 500
MAX_PASSES = 3
MAX_FAILED_IDS = 20
SYSTEM_CTX = ProjectContext(None, "system")
_ID_TYPES = {
    "uuid": "uuid",
    "text": "text",
    "bigint": "bigint",
    "integer": "integer",
    "boolean": "boolean",
}
_U32 = struct.Struct(">I")


class ProgressSink(Protocol):
    """Receives progress (the CLI draws a progress bar from it)."""

    def start(self, label: str, total: int) -> None: ...

    def advance(self, label: str, rows: int) -> None: ...

    def note(self, text: str) -> None: ...


class _Quiet:
    def start(self, label: str, total: int) -> None:
        return None

    def advance(self, label: str, rows: int) -> None:
        return None

    def note(self, text: str) -> None:
        return None


@dataclass
class RotationReport:
    scope: str
    to_version: int
    resumed: bool = False
    passes: int = 0
    batches: int = 0
    reencrypted: dict[str, int] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)
    in_use: list[int] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    wait_s: float = 0.0
    done: bool = False

    @property
    def total_reencrypted(self) -> int:
        return sum(self.reencrypted.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "to_version": self.to_version,
            "resumed": self.resumed,
            "passes": self.passes,
            "batches": self.batches,
            "reencrypted": dict(self.reencrypted),
            "failed": {k: list(v) for k, v in self.failed.items()},
            "versions_in_use": list(self.in_use),
            "retired": list(self.retired),
            "pending": list(self.pending),
            "wait_s": round(self.wait_s, 1),
            "done": self.done,
        }


@dataclass(frozen=True)
class _Target:
    label: str
    table: str
    id_column: str
    column: str
    blob: bool


class RotatedAgainError(ConflictError):
    """The scope was rotated again while the job ran; rerun it to move to the newest version."""


def _targets(project: bool) -> list[_Target]:
    if not project:
        return [
            _Target(f"{c.table}.{c.column}", c.table, c.id_column, c.column, False)
            for c in CONTROL_COLUMNS
        ]
    out = [
        _Target(f"{c.table}.{c.column}", c.table, c.id_column, c.column, False)
        for c in PROJECT_COLUMNS
    ]
    out += [_Target(f"{t}.{col}", t, i, col, True) for t, i, col in PROJECT_BLOBS]
    return out


def _version_bytes(version: int) -> bytes:
    return _U32.pack(version)


def _close(stream: Iterator[bytes]) -> None:
    close = getattr(stream, "close", None)
    if callable(close):
        close()


class _Job:
    def __init__(
        self,
        db: RuntimeDatabase,
        keys: KeyService,
        blobs: BlobStore | None,
        project_id: uuid.UUID | None,
        *,
        batch_size: int,
        progress: ProgressSink,
        retire_grace_s: float,
        batch_delay_s: float,
        wait: bool,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.db = db
        self.keys = keys
        self.blobs = blobs
        self.project_id = project_id
        self.scope = scope_of(project_id)
        self.schema = project_schema(project_id) if project_id is not None else CONTROL_SCHEMA
        self.batch = batch_size
        self.sink = progress
        self.grace = retire_grace_s
        self.delay = batch_delay_s
        self.wait = wait
        self.state: dict[str, Any] = {}
        self.target = 0
        self.report = RotationReport(self.scope, 0)
        self.failed_versions: set[int] = set()
        self._id_types: dict[str, str] = {}

    # -- plumbing ------------------------------------------------------------------------------
    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection[Any]]:
        if self.project_id is None:
            async with self.db.control_tx(ControlContext.system_context()) as conn:
                yield conn
        else:
            async with self.db.project_tx(self.project_id, SYSTEM_CTX) as conn:
                yield conn

    @asynccontextmanager
    async def control(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with self.db.control_tx(ControlContext.system_context()) as conn:
            yield conn

    def table(self, t: _Target) -> sql.Composable:
        return sql.Identifier(self.schema, t.table)

    async def cipher(self) -> ProjectCipher:
        cipher = await project_cipher(self.keys, self.project_id)
        if cipher.current_version != self.target:
            raise RotatedAgainError(
                f"scope {self.scope} was rotated again (now version {cipher.current_version}) "
                "while re-encrypting; run `labelvault keys resume` to finish"
            )
        return cipher

    async def save(self) -> None:
        async with self.control() as conn:
            await conn.execute(
                "UPDATE lv_control.key_rotations SET progress = %s "
                "WHERE scope = %s AND to_version = %s",
                [Jsonb(self.state), self.scope, self.target],
            )

    def fail(self, t: _Target, row_id: object, version: int | None) -> None:
        ids = self.report.failed.setdefault(t.label, [])
        if len(ids) < MAX_FAILED_IDS:
            ids.append(str(row_id))
        if version is not None:
            self.failed_versions.add(version)

    async def id_type(self, conn: AsyncConnection[Any], t: _Target) -> str | None:
        """The id column's type (``uuid``/``text``/...), or None when the table is absent."""
        key = f"{t.table}.{t.id_column}"
        if key not in self._id_types:
            cur = await conn.execute(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped",
                [f"{self.schema}.{t.table}", t.id_column],
            )
            row = await cur.fetchone()
            if row is None:
                return None
            if row[0] not in _ID_TYPES:
                raise CryptoError(f"{key}: unsupported id column type {row[0]}")
            self._id_types[key] = _ID_TYPES[row[0]]
        return self._id_types[key]

    def where_after(self, t: _Target, after: str | None, id_type: str) -> sql.Composable:
        if after is None:
            return sql.SQL("TRUE")
        return sql.SQL("{} > {}::{}").format(
            sql.Identifier(t.id_column), sql.Literal(after), sql.SQL(id_type)
        )

    # -- columns -------------------------------------------------------------------------------
    async def column_pass(self, t: _Target) -> None:
        cols = self.state.setdefault("columns", {})
        st = cols.setdefault(t.label, {"after": None, "done": 0, "finished": False})
        if st["finished"]:
            return
        new = _version_bytes(self.target)
        async with self.tx() as conn:
            id_type = await self.id_type(conn, t)
            if id_type is None:
                st["finished"] = True
                return
            cur = await conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {t} WHERE {c} IS NOT NULL "
                    "AND substring({c} from 2 for 4) <> %s AND {after}"
                ).format(
                    t=self.table(t),
                    c=sql.Identifier(t.column),
                    after=self.where_after(t, st["after"], id_type),
                ),
                [new],
            )
            row = await cur.fetchone()
        self.sink.start(t.label, int(row[0]) if row else 0)
        while True:
            cipher = await self.cipher()
            updates: list[tuple[bytes, object]] = []
            async with self.tx() as conn:
                cur = await conn.execute(
                    sql.SQL(
                        "SELECT {i}::text, {c} FROM {t} WHERE {c} IS NOT NULL "
                        "AND substring({c} from 2 for 4) <> %s AND {after} "
                        "ORDER BY {i} LIMIT %s FOR UPDATE"
                    ).format(
                        t=self.table(t),
                        i=sql.Identifier(t.id_column),
                        c=sql.Identifier(t.column),
                        after=self.where_after(t, st["after"], id_type),
                    ),
                    [new, self.batch],
                )
                rows = await cur.fetchall()
                for row_id, value in rows:
                    value = bytes(value)
                    try:
                        version = peek_key_version(value)
                    except DecryptionError:
                        self.fail(t, row_id, None)
                        continue
                    if version == self.target:
                        continue
                    try:
                        plain = cipher.decrypt(t.table, row_id, t.column, value)
                    except (DecryptionError, DataDestroyedError):
                        self.fail(t, row_id, version)
                        continue
                    updates.append((cipher.encrypt(t.table, row_id, t.column, plain), row_id))
                if updates:
                    async with conn.cursor() as ucur:
                        await ucur.executemany(
                            sql.SQL("UPDATE {t} SET {c} = %s WHERE {i} = %s::{ty}").format(
                                t=self.table(t),
                                c=sql.Identifier(t.column),
                                i=sql.Identifier(t.id_column),
                                ty=sql.SQL(id_type),
                            ),
                            updates,
                        )
            if not rows:
                st["finished"] = True
                await self.save()
                return
            st["after"] = str(rows[-1][0])
            st["done"] += len(updates)
            self.report.reencrypted[t.label] = self.report.reencrypted.get(t.label, 0) + len(
                updates
            )
            self.report.batches += 1
            self.state["batches"] = int(self.state.get("batches", 0)) + 1
            await self.save()
            self.sink.advance(t.label, len(rows))
            if self.delay:
                await asyncio.sleep(self.delay)

    async def column_versions(self, t: _Target) -> set[int]:
        async with self.tx() as conn:
            if await self.id_type(conn, t) is None:
                return set()
            cur = await conn.execute(
                sql.SQL(
                    "SELECT DISTINCT substring({c} from 1 for 5) FROM {t} WHERE {c} IS NOT NULL"
                ).format(t=self.table(t), c=sql.Identifier(t.column))
            )
            heads = [bytes(r[0]) for r in await cur.fetchall()]
        versions = set()
        for head in heads:
            if len(head) == 5 and head[0] == 1:
                versions.add(_U32.unpack_from(head, 1)[0])
        return versions

    # -- blobs ---------------------------------------------------------------------------------
    def _peek_blob(self, blob_id: str) -> int:
        assert self.blobs is not None and self.project_id is not None
        stream = self.blobs.get(self.project_id, blob_id)
        head = bytearray()
        try:
            for piece in stream:
                head += piece
                if len(head) >= BLOB_HEADER_BYTES:
                    break
        finally:
            _close(stream)
        return peek_blob_key_version(bytes(head))

    def _reencrypt_blob(
        self, cipher: ProjectCipher, t: _Target, row_id: object, blob_id: str
    ) -> None:
        assert self.blobs is not None and self.project_id is not None
        source = self.blobs.get(self.project_id, blob_id)
        try:
            plain = cipher.decrypt_chunks(t.table, str(row_id), source)
            self.blobs.put(
                self.project_id, blob_id, cipher.encrypt_chunks(t.table, str(row_id), plain)
            )
        finally:
            _close(source)

    async def blob_pass(self, t: _Target) -> None:
        if self.blobs is None or self.project_id is None:
            return
        table_state = self.state.setdefault("blobs", {})
        st = table_state.setdefault(
            t.label, {"after": None, "done": 0, "versions": [], "finished": False}
        )
        if st["finished"]:
            return
        seen: set[int] = set(st["versions"])
        async with self.tx() as conn:
            id_type = await self.id_type(conn, t)
            if id_type is None:
                st["finished"] = True
                return
            cur = await conn.execute(
                sql.SQL("SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND {after}").format(
                    t=self.table(t),
                    c=sql.Identifier(t.column),
                    after=self.where_after(t, st["after"], id_type),
                )
            )
            row = await cur.fetchone()
        self.sink.start(t.label, int(row[0]) if row else 0)
        while True:
            cipher = await self.cipher()
            moved = 0
            async with self.tx() as conn:
                cur = await conn.execute(
                    sql.SQL(
                        "SELECT {i}::text, {c} FROM {t} WHERE {c} IS NOT NULL AND {after} "
                        "ORDER BY {i} LIMIT %s FOR UPDATE"
                    ).format(
                        t=self.table(t),
                        i=sql.Identifier(t.id_column),
                        c=sql.Identifier(t.column),
                        after=self.where_after(t, st["after"], id_type),
                    ),
                    [self.batch],
                )
                rows = await cur.fetchall()
                for row_id, blob_id in rows:
                    try:
                        version = await asyncio.to_thread(self._peek_blob, str(blob_id))
                    except (BlobNotFoundError, DecryptionError):
                        self.fail(t, row_id, None)
                        continue
                    if version == self.target:
                        seen.add(version)
                        continue
                    try:
                        await asyncio.to_thread(
                            self._reencrypt_blob, cipher, t, row_id, str(blob_id)
                        )
                    except (BlobNotFoundError, DecryptionError, DataDestroyedError):
                        self.fail(t, row_id, version)
                        seen.add(version)
                        continue
                    seen.add(self.target)
                    moved += 1
            if not rows:
                st["finished"] = True
                st["versions"] = sorted(seen)
                await self.save()
                return
            st["after"] = str(rows[-1][0])
            st["done"] += moved
            st["versions"] = sorted(seen)
            self.report.reencrypted[t.label] = self.report.reencrypted.get(t.label, 0) + moved
            self.report.batches += 1
            self.state["batches"] = int(self.state.get("batches", 0)) + 1
            await self.save()
            self.sink.advance(t.label, len(rows))
            if self.delay:
                await asyncio.sleep(self.delay)

    # -- the job -------------------------------------------------------------------------------
    async def grace_wait(self) -> float:
        """Seconds until the rotation (every retired version) is older than the grace (0: now)."""
        async with self.control() as conn:
            cur = await conn.execute(
                "SELECT min(extract(epoch FROM now() - retired_at)) FROM lv_control.data_keys "
                "WHERE scope = %s AND state = 'retired'",
                [self.scope],
            )
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return 0.0
        return max(0.0, self.grace - float(row[0]))

    async def retired_versions(self) -> list[int]:
        async with self.control() as conn:
            cur = await conn.execute(
                "SELECT version FROM lv_control.data_keys WHERE scope = %s AND state = 'retired' "
                "ORDER BY version",
                [self.scope],
            )
            return [int(r[0]) for r in await cur.fetchall()]

    async def begin(self) -> None:
        ring_cipher = await project_cipher(self.keys, self.project_id)
        self.target = ring_cipher.current_version
        self.report.to_version = self.target
        retired = await self.retired_versions()
        async with self.control() as conn:
            if retired:  # a rotation to finish (its row exists unless it predates the job)
                await conn.execute(
                    "INSERT INTO lv_control.key_rotations (scope, to_version) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING",
                    [self.scope, self.target],
                )
            cur = await conn.execute(
                "SELECT progress FROM lv_control.key_rotations "
                "WHERE scope = %s AND to_version = %s",
                [self.scope, self.target],
            )
            row = await cur.fetchone()
        self.state = dict(row[0]) if row and row[0] else {}
        self.report.resumed = bool(self.state.get("batches")) or bool(self.state.get("columns"))

    async def run(self) -> RotationReport:
        await self.begin()
        targets = _targets(self.project_id is not None)
        wait = await self.grace_wait()
        if wait > 0:
            if not self.wait:
                self.report.wait_s = wait
                self.report.pending = await self.retired_versions()
                return self.report
            self.sink.note(
                f"waiting {wait:.0f} s so that every server has loaded data key version "
                f"{self.target} before values move to it"
            )
            await asyncio.sleep(wait)
        while True:
            passes = int(self.state.get("pass", 1))
            self.report.passes = passes
            self.report.failed = {}
            self.failed_versions = set()
            for t in targets:
                if t.blob:
                    await self.blob_pass(t)
                else:
                    await self.column_pass(t)
            in_use: set[int] = set()
            for t in targets:
                if t.blob:
                    st = self.state.get("blobs", {}).get(t.label, {})
                    in_use |= set(st.get("versions", []))
                else:
                    in_use |= await self.column_versions(t)
            stale = in_use - {self.target} - self.failed_versions
            if stale and passes < MAX_PASSES:
                self.sink.note(
                    f"versions {sorted(stale)} were written during the pass; scanning again"
                )
                self.state = {"pass": passes + 1, "batches": self.state.get("batches", 0)}
                await self.save()
                continue
            break
        self.report.in_use = sorted(in_use | {self.target})
        self.report.retired = await self.keys.retire_unused(self.scope, set(self.report.in_use))
        self.report.pending = await self.retired_versions()
        self.report.done = not self.report.pending
        self.state["phase"] = "done" if self.report.done else "pending"
        async with self.control() as conn:
            await conn.execute(
                "UPDATE lv_control.key_rotations SET progress = %s "
                "WHERE scope = %s AND to_version = %s",
                [Jsonb(self.state), self.scope, self.target],
            )
            if self.report.done:
                await conn.execute(
                    "UPDATE lv_control.key_rotations SET state = 'done', finished_at = now() "
                    "WHERE scope = %s AND state = 'running' AND to_version <= %s",
                    [self.scope, self.target],
                )
        return self.report


@asynccontextmanager
async def _exclusive(db: RuntimeDatabase, scope: str) -> AsyncIterator[None]:
    """One job per scope at a time (a session advisory lock, released if the process dies)."""
    async with db.control_pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(hashtext('lv_reencrypt:' || %s))", [scope]
            )
            row = await cur.fetchone()
            if not (row and row[0]):
                raise ConflictError(f"a re-encryption of scope {scope} is already running")
            try:
                yield
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtext('lv_reencrypt:' || %s))", [scope]
                )
        finally:
            await conn.set_autocommit(False)


async def reencrypt_scope(
    db: RuntimeDatabase,
    keys: KeyService,
    blobs: BlobStore | None,
    project_id: uuid.UUID | None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressSink | None = None,
    retire_grace_s: float | None = None,
    batch_delay_s: float = 0.0,
    wait: bool = False,
) -> RotationReport:
    """Finish the rotation of a project (``project_id``) or of the control plane (``None``):
    re-encrypt what is on old versions, then destroy the versions nothing uses. Resumable.

    ``retire_grace_s`` defaults to the key cache TTL (see the module docstring); with
    ``wait`` the job sleeps out what is left of it, otherwise it returns at once (``wait_s``).
    """
    grace = keys.ttl_s if retire_grace_s is None else max(0.0, retire_grace_s)
    job = _Job(
        db,
        keys,
        blobs,
        project_id,
        batch_size=batch_size,
        progress=progress or _Quiet(),
        retire_grace_s=grace,
        batch_delay_s=batch_delay_s,
        wait=wait,
    )
    async with _exclusive(db, job.scope):
        return await job.run()


async def pending_rotations(db: RuntimeDatabase, scope: str | None = None) -> list[str]:
    """Scopes with an unfinished rotation (``running``), oldest first."""
    async with db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT r.scope FROM lv_control.key_rotations r WHERE r.state = 'running' "
            "AND (%s::text IS NULL OR r.scope = %s) "
            "AND NOT EXISTS (SELECT 1 FROM lv_control.data_keys k WHERE k.scope = r.scope "
            "                AND k.state = 'destroyed' AND NOT EXISTS ("
            "                  SELECT 1 FROM lv_control.data_keys a "
            "                   WHERE a.scope = r.scope AND a.state = 'active')) "
            "GROUP BY r.scope ORDER BY min(r.started_at)",
            [scope, scope],
        )
        return [str(r[0]) for r in await cur.fetchall()]


async def rotate_scope(
    db: RuntimeDatabase,
    keys: KeyService,
    blobs: BlobStore | None,
    project_id: uuid.UUID | None,
    **options: Any,
) -> RotationReport:
    """``keys rotate``: a new data-key version, then :func:`reencrypt_scope`.

    If a rotation of the scope is still running (crashed, or waiting for its grace period),
    it is resumed instead of starting yet another version.
    """
    scope = scope_of(project_id)
    if not await pending_rotations(db, scope):
        await keys.rotate(scope)
    return await reencrypt_scope(db, keys, blobs, project_id, **options)


# -- status ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyVersionStatus:
    scope: str
    version: int
    state: str
    kek_id: str
    encryptions: int
    created_at: datetime
    retired_at: datetime | None
    destroyed_at: datetime | None


@dataclass(frozen=True)
class RotationStatus:
    scope: str
    to_version: int
    state: str
    progress: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None

    @property
    def reencrypted(self) -> int:
        total = 0
        for group in ("columns", "blobs"):
            for st in (self.progress.get(group) or {}).values():
                total += int(st.get("done", 0))
        return total


async def key_status(
    db: RuntimeDatabase, scope: str | None = None
) -> tuple[list[KeyVersionStatus], list[RotationStatus]]:
    """Every data-key version (no key material) and rotation, optionally of one scope."""
    async with db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT scope, version, state, kek_id, encryptions, created_at, retired_at, "
            "destroyed_at FROM lv_control.data_keys WHERE (%s::text IS NULL OR scope = %s) "
            "ORDER BY scope = 'control' DESC, scope, version",
            [scope, scope],
        )
        versions = [
            KeyVersionStatus(str(r[0]), int(r[1]), r[2], r[3], int(r[4]), r[5], r[6], r[7])
            for r in await cur.fetchall()
        ]
        cur = await conn.execute(
            "SELECT scope, to_version, state, progress, started_at, finished_at "
            "FROM lv_control.key_rotations WHERE (%s::text IS NULL OR scope = %s) "
            "ORDER BY started_at, scope, to_version",
            [scope, scope],
        )
        rotations = [
            RotationStatus(str(r[0]), int(r[1]), r[2], dict(r[3] or {}), r[4], r[5])
            for r in await cur.fetchall()
        ]
    return versions, rotations


def is_control(scope: str) -> bool:
    return scope == CONTROL_SCOPE
