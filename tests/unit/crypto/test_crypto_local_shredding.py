"""Per-scope KEKs of the local provider: destroy_scope defeats every copy of a scope's wraps."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from labelvault.crypto import (
    DataDestroyedError,
    DecryptionError,
    KeyProviderError,
    WrappedKey,
    make_key_provider,
)
from labelvault.crypto.context import encode_fields, encode_mapping
from labelvault.crypto.providers.local import (
    KEYRING_FILENAME,
    SCOPES_FILENAME,
    LocalKeyProvider,
    derive_scope_kek,
)

A = "11111111-1111-1111-1111-111111111111"
B = "22222222-2222-2222-2222-222222222222"
DEK = bytes(range(32))


def ctx(scope: str, version: int = 1) -> dict[str, str]:
    return {"scope": scope, "purpose": "data-key", "version": str(version)}


def doc(directory: Path, name: str = KEYRING_FILENAME) -> dict[str, object]:
    data = json.loads((directory / name).read_text())
    assert isinstance(data, dict)
    return data


def test_salt_per_scope_created_on_first_wrap(tmp_path: Path) -> None:
    p = LocalKeyProvider.open(tmp_path)
    assert doc(tmp_path)["scopes"] == {}
    wa = p.wrap(DEK, ctx(A))
    p.wrap(DEK, ctx(A, 2))
    p.wrap(DEK, ctx(B))
    scopes = doc(tmp_path)["scopes"]
    assert isinstance(scopes, dict) and set(scopes) == {A, B}
    salt_a = base64.b64decode(scopes[A]["salt"])
    assert len(salt_a) == 32 and salt_a != base64.b64decode(scopes[B]["salt"])
    assert stat.S_IMODE((tmp_path / KEYRING_FILENAME).stat().st_mode) == 0o600
    # the scope KEK is HKDF(root, salt, "labelvault/scope-kek/v1" || scope), not the root KEK
    root = base64.b64decode(doc(tmp_path)["keks"]["v1"]["key"])  # type: ignore[index]
    kek = derive_scope_kek(root, salt_a, A)
    assert kek != root and len(kek) == 32
    aad = encode_fields(b"labelvault/local-wrap/v2", "v1:scoped", encode_mapping(ctx(A)))
    assert AESGCM(kek).decrypt(wa.wrapped[:12], wa.wrapped[12:], aad) == DEK
    # a wrap of A presented as B's fails authentication (different scope KEK)
    with pytest.raises(DecryptionError):
        p.unwrap(wa, ctx(B))
    with pytest.raises(DecryptionError, match="no key material"):
        p.unwrap(wa, ctx("33333333-3333-3333-3333-333333333333"))


def test_destroy_scope_defeats_every_copy(tmp_path: Path) -> None:
    p = LocalKeyProvider.open(tmp_path)
    other_process = LocalKeyProvider.open(tmp_path)
    a1 = p.wrap(DEK, ctx(A))
    a2 = p.wrap(DEK, ctx(A, 2))
    p.rotate_kek()
    a1_moved = p.rewrap(a1, ctx(A))
    backup = [WrappedKey.from_bytes(w.to_bytes()) for w in (a1, a2, a1_moved)]
    b = p.wrap(DEK, ctx(B))
    c = p.wrap(DEK, ctx("control"))
    assert other_process.unwrap(a1, ctx(A)) == DEK  # it has A's salt cached now

    p.destroy_scope(A)

    scopes = doc(tmp_path)["scopes"]
    assert isinstance(scopes, dict) and A not in scopes and B in scopes
    destroyed = doc(tmp_path)["destroyed"]
    assert isinstance(destroyed, dict) and A in destroyed
    assert p.destroyed_scopes().keys() == {A}
    fresh = LocalKeyProvider.open(tmp_path)
    cases = [(a1, 1), (a2, 2), (a1_moved, 1), (backup[0], 1), (backup[1], 2), (backup[2], 1)]
    for provider in (p, other_process, fresh):
        for wrapped, version in cases:
            with pytest.raises(DataDestroyedError, match=f"scope {A} was destroyed"):
                provider.unwrap(wrapped, ctx(A, version))
        with pytest.raises(DataDestroyedError):
            provider.rewrap(a1, ctx(A))
        with pytest.raises(DataDestroyedError):
            provider.wrap(DEK, ctx(A, 3))  # a destroyed scope is terminal
        assert provider.unwrap(b, ctx(B)) == DEK
        assert provider.unwrap(c, ctx("control")) == DEK
    p.destroy_scope(A)  # idempotent
    other_process.destroy_scope(A)
    p.destroy_scope("44444444-4444-4444-4444-444444444444")  # never used: tombstoned
    with pytest.raises(KeyProviderError, match="control"):
        p.destroy_scope("control")
    with pytest.raises(KeyProviderError, match="invalid key scope"):
        p.destroy_scope("../etc")
    assert fresh.unwrap(b, ctx(B)) == DEK


def test_rotation_and_rewrap_per_scope_keep_the_salt(tmp_path: Path) -> None:
    p = LocalKeyProvider.open(tmp_path)
    old_a, old_b = p.wrap(DEK, ctx(A)), p.wrap(DEK, ctx(B))
    salts = doc(tmp_path)["scopes"]
    assert p.rotate_kek() == "v2:scoped"
    assert doc(tmp_path)["scopes"] == salts  # rotation does not touch the salts
    new_a, new_b = p.rewrap(old_a, ctx(A)), p.rewrap(old_b, ctx(B))
    assert new_a.kek_id == new_b.kek_id == p.current_kek_id(A) == "v2:scoped"
    for w, s in ((old_a, A), (new_a, A), (old_b, B), (new_b, B)):
        assert LocalKeyProvider.open(tmp_path).unwrap(w, ctx(s)) == DEK
    p.destroy_scope(B)
    for w in (old_b, new_b):
        with pytest.raises(DataDestroyedError):
            p.unwrap(w, ctx(B))
    assert p.unwrap(new_a, ctx(A)) == DEK and p.unwrap(old_a, ctx(A)) == DEK


def test_legacy_root_wraps_unwrap_and_migrate_unless_destroyed(tmp_path: Path) -> None:
    """Wraps made before per-scope KEKs (KEK id "v1", directly under the root KEK)."""
    p = LocalKeyProvider.open(tmp_path)
    root = base64.b64decode(doc(tmp_path)["keks"]["v1"]["key"])  # type: ignore[index]

    def legacy(scope: str) -> WrappedKey:
        nonce = os.urandom(12)
        aad = encode_fields(b"labelvault/local-wrap/v1", "v1", encode_mapping(ctx(scope)))
        return WrappedKey("local", "v1", nonce + AESGCM(root).encrypt(nonce, DEK, aad))

    la, lb = legacy(A), legacy(B)
    assert p.unwrap(la, ctx(A)) == DEK
    moved = p.rewrap(la, ctx(A))
    assert moved.kek_id == "v1:scoped" != la.kek_id and p.unwrap(moved, ctx(A)) == DEK
    p.destroy_scope(B)
    with pytest.raises(DataDestroyedError):
        p.unwrap(lb, ctx(B))


def test_operator_key_needs_directory_for_shredding(tmp_path: Path) -> None:
    raw = os.urandom(32)
    plain = make_key_provider("local", operator_key=raw)
    assert plain.current_kek_id() == "operator"
    old = plain.wrap(DEK, ctx(A))
    with pytest.raises(KeyProviderError, match="crypto-shredding needs a keyring directory"):
        plain.destroy_scope(A)

    salts_dir = tmp_path / "salts"
    p = make_key_provider("local", operator_key=raw, directory=salts_dir)
    assert isinstance(p, LocalKeyProvider)
    assert not (salts_dir / KEYRING_FILENAME).exists()
    assert p.current_kek_id() == "operator:scoped"
    # migration: old single-KEK wraps still open and a rewrap moves them to per-scope KEKs
    assert p.unwrap(old, ctx(A)) == DEK
    moved = p.rewrap(old, ctx(A))
    assert moved.kek_id == "operator:scoped"
    w_b = p.wrap(DEK, ctx(B))
    text = (salts_dir / SCOPES_FILENAME).read_text()
    assert base64.b64encode(raw).decode() not in text and "keks" not in text
    assert stat.S_IMODE((salts_dir / SCOPES_FILENAME).stat().st_mode) == 0o600
    with pytest.raises(KeyProviderError, match="no keyring directory"):
        plain.unwrap(moved, ctx(A))
    with pytest.raises(KeyProviderError, match="cannot be rotated"):
        p.rotate_kek()

    p.destroy_scope(A)
    again = LocalKeyProvider.from_operator_key(raw, salts_dir)
    for provider in (p, again):
        for w in (moved, old):
            with pytest.raises(DataDestroyedError):
                provider.unwrap(w, ctx(A))
        assert provider.unwrap(w_b, ctx(B)) == DEK
    with pytest.raises(KeyProviderError, match="control"):
        p.destroy_scope("control")


def test_old_keyring_file_without_scopes_loads(tmp_path: Path) -> None:
    path = tmp_path / KEYRING_FILENAME
    key = base64.b64encode(os.urandom(32)).decode()
    path.write_text(json.dumps({"format": 1, "current": "v1", "keks": {"v1": {"key": key}}}))
    path.chmod(0o600)
    p = LocalKeyProvider.open(tmp_path)
    w = p.wrap(DEK, ctx(A))
    assert LocalKeyProvider.open(tmp_path).unwrap(w, ctx(A)) == DEK


def test_inconsistent_salt_file_refused(tmp_path: Path) -> None:
    p = LocalKeyProvider.open(tmp_path)
    p.wrap(DEK, ctx(A))
    path = tmp_path / KEYRING_FILENAME
    data = json.loads(path.read_text())
    data["destroyed"] = {A: "now"}  # salt and tombstone at once
    path.write_text(json.dumps(data))
    with pytest.raises(KeyProviderError, match="inconsistent"):
        LocalKeyProvider.open(tmp_path)


def test_concurrent_first_wraps_share_one_salt(tmp_path: Path) -> None:
    providers = [LocalKeyProvider.open(tmp_path) for _ in range(6)]
    barrier = threading.Barrier(len(providers))
    out: list[tuple[LocalKeyProvider, WrappedKey]] = []

    def first_wrap(p: LocalKeyProvider) -> None:
        barrier.wait()
        out.append((p, p.wrap(DEK, ctx(A))))

    threads = [threading.Thread(target=first_wrap, args=(p,)) for p in providers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == len(providers)
    final = LocalKeyProvider.open(tmp_path)
    for _, w in out:
        assert final.unwrap(w, ctx(A)) == DEK
        assert all(p.unwrap(w, ctx(A)) == DEK for p in providers)
