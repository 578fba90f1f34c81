"""The key service: a scope's versioned data keys, unwrapped on demand and cached in memory.

Wrapped keys live in ``lv_control.data_keys`` (system context only). Unwrapped keyrings are kept
in a bounded LRU with expiry, so disabling a KEK in the provider takes effect within the TTL.
Shredding replaces the wrapped keys by tombstones, asks the provider to destroy the scope's own
key material where it has any, and zeroes the cached keys; reads then fail with
``DataDestroyedError``, never with garbage.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from psycopg import AsyncConnection

from labelvault.crypto import (
    DataDestroyedError,
    DataKey,
    KeyProvider,
    ProjectKeyring,
    WrappedKey,
    generate_wrapped_data_key,
    unwrap_data_key,
)
from labelvault.db.context import ControlContext
from labelvault.db.runtime import RuntimeDatabase

DEFAULT_TTL_S = 300.0
DEFAULT_MAX_SCOPES = 256
# Persist usage counts at least this often, so the rotation threshold holds across restarts.
COUNT_FLUSH_EVERY = 10_000


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

    # -- loading -----------------------------------------------------------------------------
    async def keyring(self, scope: str) -> ProjectKeyring:
        entry = self._rings.get(scope)
        now = time.monotonic()
        if entry is not None and entry[1] > now:
            self._rings.move_to_end(scope)
            ring = entry[0]
            await self._maybe_rotate(scope, ring)
            return ring
        async with self._lock:
            entry = self._rings.get(scope)
            if entry is not None and entry[1] > now:
                return entry[0]
            ring = await self._load(scope)
            self._remember(scope, ring)
        return ring

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
        if any(state == "destroyed" for _, _, state, _ in rows):
            raise DataDestroyedError()
        keys: list[DataKey] = []
        current = None
        for version, wrapped_bytes, state, count in rows:
            wrapped = WrappedKey.from_bytes(bytes(wrapped_bytes))
            key = await asyncio.to_thread(unwrap_data_key, self.provider, wrapped, scope, version)
            key.restore_usage(int(count))
            self._flushed[(scope, version)] = int(count)
            keys.append(key)
            if state == "active":
                current = version
        return ProjectKeyring(scope, keys, current=current)

    # -- usage counting and automatic rotation -------------------------------------------------
    async def _maybe_rotate(self, scope: str, ring: ProjectKeyring) -> None:
        key = ring.current
        flushed = self._flushed.get((scope, key.version), 0)
        if key.encryptions - flushed >= COUNT_FLUSH_EVERY:
            await self.flush_counts(scope)
        if key.needs_rotation:
            await self.rotate(scope)

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
            if any(state == "destroyed" for _, _, state, _ in rows):
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
        self.forget(scope)
        return version

    async def rewrap_all(self) -> int:
        """KEK rotation: re-wrap every stored data key under the provider's current KEK.

        Touches no data; each key is re-wrapped in its own short transaction, so a crash leaves
        every key readable (old or new KEK) and rerunning finishes the job.
        """
        current = await asyncio.to_thread(self.provider.current_kek_id)
        async with self._db.control_tx(ControlContext.system_context()) as conn:
            cur = await conn.execute(
                "SELECT scope, version FROM lv_control.data_keys "
                "WHERE state <> 'destroyed' AND kek_id <> %s ORDER BY scope, version",
                [current],
            )
            todo = list(await cur.fetchall())
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
                from labelvault.crypto import data_key_context

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
            gone = [r[0] for r in await cur.fetchall()]
        if gone:
            self.forget(scope)
        return gone

    # -- shredding -----------------------------------------------------------------------------
    async def shred(self, scope: str, conn: AsyncConnection[Any] | None = None) -> list[int]:
        """Destroy every data key of ``scope``; returns the versions destroyed."""
        if conn is None:
            async with self._db.control_tx(ControlContext.system_context()) as own:
                versions = await self._shred_rows(own, scope)
        else:
            versions = await self._shred_rows(conn, scope)
        destroy = getattr(self.provider, "destroy_scope", None)
        if destroy is not None:
            await asyncio.to_thread(destroy, scope)
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
        await self.flush_counts()
        for scope in list(self._rings):
            self.forget(scope)
