from __future__ import annotations

from pathlib import Path

import pytest

from labelvault.crypto import (
    CryptoError,
    DataDestroyedError,
    DataKey,
    DecryptionError,
    EncryptionContext,
    KeyCache,
    ProjectKeyring,
    data_key_context,
    decrypt_value,
    encrypt_value,
    generate_wrapped_data_key,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from labelvault.crypto.providers.local import LocalKeyProvider

SCOPE = "22222222-2222-2222-2222-222222222222"
CTX = EncryptionContext(SCOPE, "annotations", "a-1", "result")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keyring_rotation_and_lookup() -> None:
    ring = ProjectKeyring(SCOPE)
    with pytest.raises(CryptoError, match="no data key"):
        _ = ring.current
    k1 = ring.rotate()
    old = encrypt_value(ring.current, b"old", CTX)
    k2 = ring.rotate()
    assert (k1.version, k2.version, ring.current is k2) == (1, 2, True)
    new = encrypt_value(ring.current, b"new", CTX)
    assert decrypt_value(ring.get, old, CTX) == b"old"
    assert decrypt_value(ring, new, CTX) == b"new"
    assert ring.versions == [1, 2]
    with pytest.raises(CryptoError, match="version 9 is not loaded"):
        ring.get(9)
    with pytest.raises(CryptoError, match="already exists"):
        ring.add(DataKey.generate(1))


def test_keyring_shred() -> None:
    ring = ProjectKeyring(SCOPE, [new_data_key(1), new_data_key(2)], current=1)
    assert ring.current.version == 1
    blob = encrypt_value(ring.current, b"secret", CTX)
    material = ring.get(1)._material
    ring.shred()
    assert material == bytearray(32)
    with pytest.raises(DataDestroyedError, match="data destroyed"):
        decrypt_value(ring.get, blob, CTX)
    with pytest.raises(DataDestroyedError):
        _ = ring.current
    with pytest.raises(CryptoError):
        ProjectKeyring(SCOPE, [new_data_key(1)], current=5)


def test_cache_lru_bound() -> None:
    cache = KeyCache(max_entries=3, ttl_seconds=60, clock=Clock())
    keys = [new_data_key(v) for v in range(1, 5)]
    for k in keys[:3]:
        cache.put(SCOPE, k)
    assert cache.get(SCOPE, 1) is keys[0]  # 1 becomes most recently used
    cache.put(SCOPE, keys[3])
    assert len(cache) == 3
    assert cache.get(SCOPE, 2) is None  # least recently used was evicted ...
    assert keys[1]._material == bytearray(32)  # ... and zeroed
    assert cache.get(SCOPE, 1) is keys[0] and not keys[0].wiped
    assert cache.get(SCOPE, 4) is keys[3]


def test_cache_ttl_with_injected_clock() -> None:
    clock = Clock()
    cache = KeyCache(max_entries=10, ttl_seconds=30, clock=clock)
    key = new_data_key(1)
    cache.put(SCOPE, key)
    clock.now += 29.9
    assert cache.get(SCOPE, 1) is key
    clock.now += 0.2
    assert cache.get(SCOPE, 1) is None
    assert key.wiped and key._material == bytearray(32)
    loads: list[int] = []

    def loader() -> DataKey:
        loads.append(1)
        return new_data_key(1)

    a = cache.get_or_load(SCOPE, 1, loader)
    b = cache.get_or_load(SCOPE, 1, loader)
    assert a is b and len(loads) == 1
    with pytest.raises(CryptoError, match="another version"):
        cache.get_or_load(SCOPE, 7, loader)


def test_evict_scope_zeroes_only_that_scope() -> None:
    cache = KeyCache(clock=Clock())
    mine = [new_data_key(1), new_data_key(2)]
    other = new_data_key(1)
    for k in mine:
        cache.put(SCOPE, k)
    cache.put("control", other)
    buffers = [k._material for k in mine]
    assert cache.evict_scope(SCOPE) == 2
    for buf in buffers:
        assert buf == bytearray(32)
    assert cache.get(SCOPE, 1) is None
    assert cache.get("control", 1) is other and other._material != bytearray(32)
    assert dict(cache.scopes()) == {"control": 1}
    cache.clear()
    assert other.wiped and len(cache) == 0


def test_cache_rejects_bad_settings() -> None:
    with pytest.raises(CryptoError):
        KeyCache(max_entries=0)
    with pytest.raises(CryptoError):
        KeyCache(ttl_seconds=0)


def test_wrap_unwrap_data_key_binds_scope_and_version(tmp_path: Path) -> None:
    provider = LocalKeyProvider.open(tmp_path)
    key = new_data_key(3)
    blob = encrypt_value(key, b"payload", CTX)
    wrapped = wrap_data_key(provider, key, SCOPE)
    assert data_key_context(SCOPE, 3) == {"scope": SCOPE, "purpose": "data-key", "version": "3"}
    restored = unwrap_data_key(provider, wrapped, SCOPE, 3)
    assert restored.version == 3
    assert decrypt_value(lambda v: restored, blob, CTX) == b"payload"
    with pytest.raises(DecryptionError):
        unwrap_data_key(provider, wrapped, "control", 3)
    with pytest.raises(DecryptionError):
        unwrap_data_key(provider, wrapped, SCOPE, 4)
    key2, wrapped2 = generate_wrapped_data_key(provider, SCOPE, 4)
    assert unwrap_data_key(provider, wrapped2, SCOPE, 4)._material == key2._material
    assert generate_wrapped_data_key(provider, SCOPE, 5)[0]._material != key2._material
