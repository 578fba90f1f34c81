"""The key service: a scope's versioned data keys, unwrapped on demand and cached in memory.

Wrapped keys live in ``lv_control.data_keys`` (system context only). Unwrapped keyrings are kept
in a bounded LRU with expiry, so disabling a KEK in the provider takes effect within the TTL.
Shredding replaces the wrapped keys by tombstones, asks the provider to destroy the scope's own
key material where it has any, and zeroes the cached keys; reads then fail with
``DataDestroyedError``, never with garbage.

A scope is *shredded* when it has tombstones and no active version. A retired version destroyed
by :meth:`KeyService.retire_unused` after re-encryption is a tombstone too, but the scope keeps
its active version and stays readable (values still on the destroyed version, if any, read as
``DataDestroyedError``).

Every rotation records a ``lv_control.key_rotations`` row (state ``running``) in the same
transaction, so the re-encryption job (:mod:`labelvault.keys.rotation`) knows what is left to do
also after an automatic rotation or a crash.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from psycopg import AsyncConnection

from labelvault.crypto import (
    CONTROL_SCOPE,
    DataDestroyedError,
    DataKey,
    KeyProvider,
    KeyProviderError,
    ProjectKeyring,
    WrappedKey,
    data_key_context,
    generate_wrapped_data_key,
    unwrap_data_key,
)
from labelvault.db.context import ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.logs import get_logger

DEFAULT_TTL_S = 30.0  # rotations and shreds by other servers are seen within this
DEFAULT_MAX_SCOPES = 256
# Persist usage counts at least this often, so the rotation threshold holds across restarts.
COUNT_FLUSH_EVERY = 10_000
log = get_logger(__name__)


class KeyService:
    def __init__(
        self,
        db: RuntimeDatabase,
        provider: KeyProvider,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_scopes: int = DEFAULT_MAX_SCOPES,
    ) -> None:
        self._db = db
        self.provider = provider
        self._ttl = ttl_s
        self._max = max_scopes
        self._rings: OrderedDict[str, tuple[ProjectKeyring, float]] = OrderedDict()
        self._flushed: dict[tuple[str, int], int] = {}
        self._lock = asyncio.Lock()
        self._shredded: set[str] = set()
        self._destroyed_versions: dict[str, frozenset[int]] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ttl_s(self) -> float:
        """How long an unwrapped keyring is used before it is loaded again (in every process)."""
        return self._ttl

    def is_shredded(self, scope: str) -> bool:
        """True once this process has seen the scope shredded (by itself or in the database)."""
        return scope in self._shredded

    def destroyed_versions(self, scope: str) -> frozenset[int]:
        """Versions of a live scope destroyed after re-encryption (as of the last load)."""
        return self._destroyed_versions.get(scope, frozenset())

    # -- loading -----------------------------------------------------------------------------
    async def keyring(self, scope: str) -> ProjectKeyring:
        entry = self._rings.get(scope)
        now = time.monotonic()
        if entry is not None and entry[1] > now and not entry[0].destroyed:
            self._rings.move_to_end(scope)
            ring = entry[0]
            if await self._maybe_rotate(scope, ring):
                fresh = self.cached(scope)
                if fresh is not None and not fresh.destroyed:
                    return fresh
                return await self.keyring(scope)
            return ring
        async with self._lock:
            entry = self._rings.get(scope)
            if entry is not None and entry[1] > now and not entry[0].destroyed:
                return entry[0]
            try:
                ring = await self._load(scope)
            except DataDestroyedError:
                self.forget(scope)  # shredded elsewhere: drop the stale keyring at once
                raise
            self._remember(scope, ring)
        return ring

    async def reload(self, scope: str) -> None:
        """Replace the cached keyring by a fresh load (after a rotation or a retirement, or a
        value naming a key version this process has not seen yet), so ciphers that look the
        keyring up per operation move on to it at once."""
        try:
            ring = await self._load(scope)
        except DataDestroyedError:
            self.forget(scope)
            raise
        self._remember(scope, ring)

    def refresh_if_stale(self, scope: str) -> None:
        """For synchronous users of :meth:`cached` (ciphers, the control sealer): when the
        cached keyring is past its TTL, reload it in the background, so rotations, retirements
        and shreds done by other processes are seen within about one TTL."""
        entry = self._rings.get(scope)
        if entry is None or entry[1] > time.monotonic() or scope in self._refreshing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._refreshing.add(scope)
        task = loop.create_task(self._refresh(scope))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, scope: str) -> None:
        try:
            await self.keyring(scope)
        except DataDestroyedError:
            pass  # keyring() forgot the stale ring already
        except Exception as exc:  # the stale keyring keeps serving; retried at the next use
            log.warning("key_refresh_failed", scope=scope, error=type(exc).__name__)
        finally:
            self._refreshing.discard(scope)

    def cached(self, scope: str) -> ProjectKeyring | None:
        entry = self._rings.get(scope)
        return entry[0] if entry else None

    def _remember(self, scope: str, ring: ProjectKeyring) -> None:
        old = self._rings.pop(scope, None)
        if old is not None and old[0] is not ring:
            old[0].shred()
        self._rings[scope] = (ring, time.monotonic() + self._ttl)
        while len(self._rings) > self._max:
            _, (evicted, _) = self._rings.popitem(last=False)
            evicted.shred()

    async def _rows(self, conn: AsyncConnection[Any], scope: str) -> list[tuple[Any, ...]]:
        cur = await conn.execute(
            "SELECT version, wrapped, state, encryptions FROM lv_control.data_keys "
            "WHERE scope = %s ORDER BY version",
            [scope],
        )
        return list(await cur.fetchall())

    async def _load(self, scope: str) -> ProjectKeyring:
        async with self._db.control_tx(ControlContext.system_context()) as conn:
            rows = await self._rows(conn, scope)
            if not rows:
                key, wrapped = await asyncio.to_thread(
                    generate_wrapped_data_key, self.provider, scope, 1
                )
                await conn.execute(
                    "INSERT INTO lv_control.data_keys (scope, version, wrapped, kek_id) "
                    "VALUES (%s, 1, %s, %s) ON CONFLICT DO NOTHING",
                    [scope, wrapped.to_bytes(), wrapped.kek_id],
                )
                rows = await self._rows(conn, scope)
        if _shredded(rows):
            self._shredded.add(scope)
            raise DataDestroyedError()
        keys: list[DataKey] = []
        current = None
        destroyed: set[int] = set()
        for version, wrapped_bytes, state, count in rows:
            if state == "destroyed":
                destroyed.add(version)
                continue
            wrapped = WrappedKey.from_bytes(bytes(wrapped_bytes))
            key = await asyncio.to_thread(unwrap_data_key, self.provider, wrapped, scope, version)
            key.restore_usage(int(count))
            self._flushed[(scope, version)] = int(count)
            keys.append(key)
            if state == "active":
                current = version
        self._destroyed_versions[scope] = frozenset(destroyed)
        return ProjectKeyring(scope, keys, current=current)

    # -- usage counting and automatic rotation -------------------------------------------------
    async def _maybe_rotate(self, scope: str, ring: ProjectKeyring) -> bool:
        """Persist usage counts now and then; rotate when the current key is worn out.

        Returns True when it rotated. The old version stays readable; run the re-encryption
        job (``labelvault keys resume``) to move the values and retire it.
        """
        key = ring.current
        flushed = self._flushed.get((scope, key.version), 0)
        if key.encryptions - flushed >= COUNT_FLUSH_EVERY:
            await self.flush_counts(scope)
        if key.needs_rotation:
            await self.rotate(scope)
            return True
        return False

    async def flush_counts(self, scope: str | None = None) -> None:
        scopes = [scope] if scope else list(self._rings)
        async with self._db.control_tx(ControlContext.system_context()) as conn:
            for s in scopes:
                entry = self._rings.get(s)
                if entry is None or entry[0].destroyed:
                    continue
                for version in entry[0].versions:
                    count = entry[0].get(version).encryptions
                    delta = count - self._flushed.get((s, version), 0)
                    if delta > 0:
                        await conn.execute(
                            "UPDATE lv_control.data_keys SET encryptions = encryptions + %s "
                            "WHERE scope = %s AND version = %s",
                            [delta, s, version],
                        )
                        self._flushed[(s, version)] = count

    # -- rotation ------------------------------------------------------------------------------
    async def rotate(self, scope: str) -> int:
        """Start a new data-key version for new writes; returns it. Old versions stay readable."""
        async with self._db.control_tx(ControlContext.system_context()) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('lv_keys:' || %s))", [scope])
            rows = await self._rows(conn, scope)
            if _shredded(rows):
                raise DataDestroyedError()
            version = max((r[0] for r in rows), default=0) + 1
            key, wrapped = await asyncio.to_thread(
                generate_wrapped_data_key, self.provider, scope, version
            )
            key.wipe()
            await conn.execute(
                "UPDATE lv_control.data_keys SET state = 'retired', retired_at = now() "
                "WHERE scope = %s AND state = 'active'",
                [scope],
            )
            await conn.execute(
                "INSERT INTO lv_control.data_keys (scope, version, wrapped, kek_id) "
                "VALUES (%s, %s, %s, %s)",
                [scope, version, wrapped.to_bytes(), wrapped.kek_id],
            )
            # the re-encryption job's to-do entry, committed with the new version
            await conn.execute(
                "INSERT INTO lv_control.key_rotations (scope, to_version) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                [scope, version],
            )
        if scope in self._rings:
            await self.flush_counts(scope)
        await self.reload(scope)
        return version

    async def rotate_kek(self) -> tuple[int, int]:
        """KEK rotation: a new KEK version in the provider for every live scope, then
        :meth:`rewrap_all`. Returns (KEKs rotated, data keys re-wrapped). Touches no data.

        A provider whose KEK is shared (the local keyring) is rotated once: a scope whose
        current KEK id already changed is not rotated again.
        """
        async with self._db.control_tx(ControlContext.system_context()) as conn:
            cur = await conn.execute(
                "SELECT DISTINCT scope FROM lv_control.data_keys WHERE state <> 'destroyed' "
                "ORDER BY scope"
            )
            scopes = [r[0] for r in await cur.fetchall()]
        before = {s: await asyncio.to_thread(self.provider.current_kek_id, s) for s in scopes}
        rotated = 0
        for scope in scopes:
            now = await asyncio.to_thread(self.provider.current_kek_id, scope)
            if now == before[scope]:
                await asyncio.to_thread(self.provider.rotate_kek, scope)
                rotated += 1
        return rotated, await self.rewrap_all()

    async def rewrap_all(self, scopes: set[str] | None = None) -> int:
        """KEK rotation: re-wrap every stored data key under the provider's current KEK.

        Touches no data; each key is re-wrapped in its own short transaction, so a crash leaves
        every key readable (old or new KEK) and rerunning finishes the job.
        """
        async with self._db.control_tx(ControlContext.system_context()) as conn:
            cur = await conn.execute(
                "SELECT scope, version, kek_id FROM lv_control.data_keys "
                "WHERE state <> 'destroyed' ORDER BY scope, version"
            )
            rows = list(await cur.fetchall())
        current: dict[str, str] = {}
        todo = []
        for scope, version, kek_id in rows:
            if scopes is not None and scope not in scopes:
                continue
            if scope not in current:
                current[scope] = await asyncio.to_thread(self.provider.current_kek_id, scope)
            if kek_id != current[scope]:
                todo.append((scope, version))
        done = 0
        for scope, version in todo:
            async with self._db.control_tx(ControlContext.system_context()) as conn:
                cur = await conn.execute(
                    "SELECT wrapped FROM lv_control.data_keys WHERE scope = %s AND version = %s "
                    "AND state <> 'destroyed' FOR UPDATE",
                    [scope, version],
                )
                row = await cur.fetchone()
                if row is None:
                    continue
                old = WrappedKey.from_bytes(bytes(row[0]))
                new = await asyncio.to_thread(
                    self.provider.rewrap, old, data_key_context(scope, version)
                )
                await conn.execute(
                    "UPDATE lv_control.data_keys SET wrapped = %s, kek_id = %s "
                    "WHERE scope = %s AND version = %s",
                    [new.to_bytes(), new.kek_id, scope, version],
                )
            done += 1
        return done

    async def retire_unused(self, scope: str, in_use: set[int]) -> list[int]:
        """Destroy retired versions that no stored value uses any more."""
        async with self._db.control_tx(ControlContext.system_context()) as conn:
            cur = await conn.execute(
                "UPDATE lv_control.data_keys SET wrapped = '\\x', state = 'destroyed', "
                "destroyed_at = now() WHERE scope = %s AND state = 'retired' "
                "AND NOT (version = ANY(%s)) RETURNING version",
                [scope, sorted(in_use)],
            )
            gone = sorted(r[0] for r in await cur.fetchall())
        if gone:
            await self.reload(scope)
        return gone

    # -- shredding -----------------------------------------------------------------------------
    async def shred(self, scope: str, conn: AsyncConnection[Any] | None = None) -> list[int]:
        """Destroy every data key of ``scope``; returns the versions destroyed.

        Idempotent (a second call destroys nothing more and returns ``[]``). The control scope is
        refused: it protects every tenant's credentials.
        """
        if scope == CONTROL_SCOPE:
            raise KeyProviderError("the control scope's keys cannot be shredded")
        if conn is None:
            async with self._db.control_tx(ControlContext.system_context()) as own:
                versions = await self._shred_rows(own, scope)
        else:
            versions = await self._shred_rows(conn, scope)
        destroy = getattr(self.provider, "destroy_scope", None)
        if destroy is not None:
            await asyncio.to_thread(destroy, scope)
        self._shredded.add(scope)
        self.forget(scope)
        return versions

    async def _shred_rows(self, conn: AsyncConnection[Any], scope: str) -> list[int]:
        cur = await conn.execute(
            "UPDATE lv_control.data_keys SET wrapped = '\\x', state = 'destroyed', "
            "destroyed_at = now() WHERE scope = %s AND state <> 'destroyed' RETURNING version",
            [scope],
        )
        return sorted(r[0] for r in await cur.fetchall())

    def forget(self, scope: str) -> None:
        entry = self._rings.pop(scope, None)
        if entry is not None:
            entry[0].shred()
        for k in [k for k in self._flushed if k[0] == scope]:
            del self._flushed[k]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.flush_counts()
        for scope in list(self._rings):
            self.forget(scope)


def _shredded(rows: list[tuple[Any, ...]]) -> bool:
    """A scope is shredded when it has tombstones and no active version left."""
    states = {r[2] for r in rows}
    return "destroyed" in states and "active" not in states
