"""Per-scope keyrings, a bounded cache of unwrapped data keys, and wrap/unwrap helpers.

Storage-agnostic: callers persist :class:`WrappedKey` bytes and versions wherever they like.
A scope is a project id (as a string) or ``"control"``.

Key material lives in ``bytearray`` objects so eviction and shredding can overwrite it with
zeros. Python cannot guarantee no other copies exist (immutable ``bytes`` passed to the AEAD
and key providers, allocator leftovers); zeroing reduces exposure, it does not prove erasure.
Crypto-shredding proper is destroying the *wrapped* keys (and KEK) in storage.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from labelvault.crypto.envelope import DataKey
from labelvault.crypto.errors import CryptoError, DataDestroyedError
from labelvault.crypto.providers.base import GeneratesDataKeys, KeyProvider, WrappedKey

__all__ = [
    "KeyCache",
    "ProjectKeyring",
    "data_key_context",
    "generate_wrapped_data_key",
    "new_data_key",
    "unwrap_data_key",
    "wrap_data_key",
]


def new_data_key(version: int) -> DataKey:
    """A fresh random 256-bit data key with the given version."""
    return DataKey.generate(version)


def data_key_context(scope: str, version: int) -> dict[str, str]:
    """The provider context bound into a data key's wrapping."""
    return {"scope": scope, "purpose": "data-key", "version": str(version)}


def wrap_data_key(provider: KeyProvider, key: DataKey, scope: str) -> WrappedKey:
    return provider.wrap(key._material_copy(), data_key_context(scope, key.version))


def unwrap_data_key(
    provider: KeyProvider, wrapped: WrappedKey, scope: str, version: int
) -> DataKey:
    material = provider.unwrap(wrapped, data_key_context(scope, version))
    return DataKey(version, material)


def generate_wrapped_data_key(
    provider: KeyProvider, scope: str, version: int
) -> tuple[DataKey, WrappedKey]:
    """New data key and its wrapping; uses the provider's generator (KMS) when it has one."""
    ctx = data_key_context(scope, version)
    if isinstance(provider, GeneratesDataKeys):
        material, wrapped = provider.generate_data_key(ctx)
        return DataKey(version, material), wrapped
    key = new_data_key(version)
    return key, wrap_data_key(provider, key, scope)


class ProjectKeyring:
    """The data keys of one scope, by version; ``current`` encrypts new writes."""

    def __init__(self, scope: str, keys: Iterable[DataKey] = (), current: int | None = None):
        if not scope:
            raise CryptoError("keyring scope must be a project id or 'control'")
        self.scope = scope
        self._keys: dict[int, DataKey] = {}
        self._current: int | None = None
        self._destroyed = False
        self._lock = threading.Lock()
        for k in keys:
            self._keys[k.version] = k
        if current is not None and current not in self._keys:
            raise CryptoError("current key version is not in the keyring")
        self._current = current if current is not None else max(self._keys, default=None)

    @property
    def destroyed(self) -> bool:
        return self._destroyed

    @property
    def versions(self) -> list[int]:
        return sorted(self._keys)

    @property
    def current(self) -> DataKey:
        with self._lock:
            if self._destroyed:
                raise DataDestroyedError()
            if self._current is None:
                raise CryptoError(f"scope {self.scope} has no data key yet")
            return self._keys[self._current]

    def get(self, version: int) -> DataKey:
        """The key of ``version`` (usable as the ``lookup`` of ``decrypt_value``)."""
        with self._lock:
            if self._destroyed:
                raise DataDestroyedError()
            try:
                return self._keys[version]
            except KeyError:
                raise CryptoError(
                    f"data key version {version} is not loaded for scope {self.scope}"
                ) from None

    __call__ = get

    def add(self, key: DataKey, *, make_current: bool = False) -> None:
        with self._lock:
            if self._destroyed:
                raise DataDestroyedError()
            if key.version in self._keys and self._keys[key.version] is not key:
                raise CryptoError(f"data key version {key.version} already exists")
            self._keys[key.version] = key
            if make_current or self._current is None:
                self._current = key.version

    def rotate(self) -> DataKey:
        """Create the next version and make it current (the caller wraps and stores it)."""
        with self._lock:
            next_version = max(self._keys, default=0) + 1
        key = new_data_key(next_version)
        self.add(key, make_current=True)
        return key

    def shred(self) -> None:
        """Zero every key in memory and refuse all further use (DataDestroyedError)."""
        with self._lock:
            for k in self._keys.values():
                k.wipe()
            self._keys.clear()
            self._current = None
            self._destroyed = True

    def __repr__(self) -> str:
        return (
            f"ProjectKeyring(scope={self.scope!r}, versions={self.versions}, "
            f"current={self._current})"
        )


class KeyCache:
    """Bounded LRU cache with TTL of unwrapped data keys, keyed by (scope, version).

    The cache owns the keys it holds: a key is wiped (zeroed) when it expires, is pushed out by
    the LRU bound, or its scope is evicted. Do not keep a DataKey beyond one operation; fetch
    it again (``get_or_load``). Using a wiped key raises CryptoError, it never encrypts with
    zeros.
    """

    def __init__(
        self,
        max_entries: int = 1024,
        ttl_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or ttl_seconds <= 0:
            raise CryptoError("key cache needs max_entries >= 1 and ttl_seconds > 0")
        self._max = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[tuple[str, int], tuple[DataKey, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def _expire(self) -> None:
        now = self._clock()
        for k in [k for k, (_, exp) in self._entries.items() if exp <= now]:
            self._entries.pop(k)[0].wipe()

    def get(self, scope: str, version: int) -> DataKey | None:
        with self._lock:
            self._expire()
            entry = self._entries.get((scope, version))
            if entry is None:
                return None
            self._entries.move_to_end((scope, version))
            return entry[0]

    def put(self, scope: str, key: DataKey) -> None:
        with self._lock:
            self._expire()
            old = self._entries.pop((scope, key.version), None)
            if old is not None and old[0] is not key:
                old[0].wipe()
            self._entries[(scope, key.version)] = (key, self._clock() + self._ttl)
            while len(self._entries) > self._max:
                _, (evicted, _) = self._entries.popitem(last=False)
                evicted.wipe()

    def get_or_load(self, scope: str, version: int, loader: Callable[[], DataKey]) -> DataKey:
        """Cached key, or ``loader()`` (e.g. unwrap from storage) cached and returned."""
        key = self.get(scope, version)
        if key is None:
            key = loader()
            if key.version != version:
                raise CryptoError("key loader returned a key of another version")
            self.put(scope, key)
        return key

    def evict_scope(self, scope: str) -> int:
        """Drop and zero every cached key of ``scope``; returns how many were dropped."""
        with self._lock:
            doomed = [k for k in self._entries if k[0] == scope]
            for k in doomed:
                self._entries.pop(k)[0].wipe()
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            for key, _ in self._entries.values():
                key.wipe()
            self._entries.clear()

    def scopes(self) -> Mapping[str, int]:
        """Number of cached keys per scope (no key material)."""
        with self._lock:
            out: dict[str, int] = {}
            for s, _ in self._entries:
                out[s] = out.get(s, 0) + 1
            return out
