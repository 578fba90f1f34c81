from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from labelvault.crypto import (
    DecryptionError,
    KeyProvider,
    KeyProviderError,
    WrappedKey,
    make_key_provider,
)
from labelvault.crypto.providers.local import KEYRING_FILENAME, LocalKeyProvider, load_operator_kek

CTX = {"scope": "project-a", "purpose": "data-key", "version": "1"}
DEK = bytes(range(32))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keyring_created_0600(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    provider = LocalKeyProvider.open(d)
    assert isinstance(provider, KeyProvider)
    path = d / KEYRING_FILENAME
    assert mode(path) == 0o600
    assert mode(d) == 0o700
    assert provider.current_kek_id() == "v1:scoped"
    doc = json.loads(path.read_text())
    assert doc["current"] == "v1" and len(base64.b64decode(doc["keks"]["v1"]["key"])) == 32


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_readable_keyring(tmp_path: Path, bad_mode: int) -> None:
    LocalKeyProvider.open(tmp_path)
    (tmp_path / KEYRING_FILENAME).chmod(bad_mode)
    with pytest.raises(KeyProviderError, match=r"has mode 0\d+.*chmod 600"):
        LocalKeyProvider.open(tmp_path)


def test_missing_keyring_without_create(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="does not exist"):
        LocalKeyProvider.open(tmp_path, create=False)


def test_malformed_keyring(tmp_path: Path) -> None:
    path = tmp_path / KEYRING_FILENAME
    path.write_text("{not json")
    path.chmod(0o600)
    with pytest.raises(KeyProviderError, match="malformed"):
        LocalKeyProvider.open(tmp_path)


def test_wrap_unwrap_and_wrong_context(tmp_path: Path) -> None:
    provider = LocalKeyProvider.open(tmp_path)
    wrapped = provider.wrap(DEK, CTX)
    assert DEK not in wrapped.wrapped
    assert provider.unwrap(wrapped, CTX) == DEK
    stored = WrappedKey.from_bytes(wrapped.to_bytes())
    assert stored == wrapped
    assert provider.unwrap(stored, dict(reversed(list(CTX.items())))) == DEK  # order-free
    for bad in (
        {**CTX, "scope": "project-b"},
        {**CTX, "version": "2"},
        {**CTX, "purpose": "blob-key"},
        {**CTX, "extra": "x"},
    ):
        with pytest.raises(DecryptionError):
            provider.unwrap(wrapped, bad)
    tampered = WrappedKey("local", wrapped.kek_id, wrapped.wrapped[:-1] + b"\x00")
    with pytest.raises(DecryptionError):
        provider.unwrap(tampered, CTX)
    # a wrap relabelled to another KEK version fails too (KEK id is bound as AAD)
    provider.rotate_kek()
    for relabel in ("v2", "v2:scoped", "v1"):
        with pytest.raises(DecryptionError):
            provider.unwrap(WrappedKey("local", relabel, wrapped.wrapped), CTX)


def test_rotation_keeps_old_wraps_and_rewrap_moves(tmp_path: Path) -> None:
    provider = LocalKeyProvider.open(tmp_path)
    old = provider.wrap(DEK, CTX)
    assert provider.rotate_kek() == "v2:scoped"
    assert provider.current_kek_id() == "v2:scoped"
    assert provider.unwrap(old, CTX) == DEK
    new = provider.rewrap(old, CTX)
    assert new.kek_id == "v2:scoped" and new.wrapped != old.wrapped
    assert provider.unwrap(new, CTX) == DEK
    with pytest.raises(DecryptionError):
        provider.rewrap(old, {**CTX, "scope": "other"})
    # persisted: a fresh process sees both KEKs and v2 as current
    again = LocalKeyProvider.open(tmp_path)
    assert again.current_kek_id() == "v2:scoped"
    assert again.unwrap(old, CTX) == DEK and again.unwrap(new, CTX) == DEK
    assert mode(tmp_path / KEYRING_FILENAME) == 0o600


def test_rotation_seen_by_other_instance(tmp_path: Path) -> None:
    a = LocalKeyProvider.open(tmp_path)
    b = LocalKeyProvider.open(tmp_path)
    a.rotate_kek()
    wrapped = a.wrap(DEK, CTX)
    assert b.unwrap(wrapped, CTX) == DEK  # b reloads on an unknown KEK id


def test_atomic_write_failure_keeps_old_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = LocalKeyProvider.open(tmp_path)
    wrapped = provider.wrap(DEK, CTX)  # creates (and persists) the scope's salt
    before = (tmp_path / KEYRING_FILENAME).read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        provider.rotate_kek()
    monkeypatch.undo()
    assert (tmp_path / KEYRING_FILENAME).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keyring-")]  # no temp file
    assert provider.current_kek_id() == "v1:scoped"  # in-memory state rolled back
    assert provider.unwrap(wrapped, CTX) == DEK
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        provider.destroy_scope("project-a")
    monkeypatch.undo()
    assert (tmp_path / KEYRING_FILENAME).read_bytes() == before
    assert provider.unwrap(wrapped, CTX) == DEK  # the salt survived the failed shred


def test_unknown_kek_and_foreign_provider(tmp_path: Path) -> None:
    provider = LocalKeyProvider.open(tmp_path)
    wrapped = provider.wrap(DEK, CTX)
    with pytest.raises(KeyProviderError, match="not in the local keyring"):
        provider.unwrap(WrappedKey("local", "v99", wrapped.wrapped), CTX)
    with pytest.raises(KeyProviderError, match="not in the local keyring"):
        provider.unwrap(WrappedKey("local", "v99:scoped", wrapped.wrapped), CTX)
    with pytest.raises(KeyProviderError, match="aws-kms"):
        provider.unwrap(WrappedKey("aws-kms", "v1", wrapped.wrapped), CTX)


def test_operator_key(tmp_path: Path) -> None:
    raw = os.urandom(32)
    b64 = base64.b64encode(raw).decode()
    assert load_operator_kek(raw) == raw
    assert load_operator_kek(b64 + "\n") == raw
    assert load_operator_kek(b64.encode()) == raw
    for bad in ("short", base64.b64encode(b"x" * 31).decode(), b"x" * 31, "!" * 44):
        with pytest.raises(KeyProviderError, match="32 raw bytes or base64"):
            load_operator_kek(bad)
    p1 = LocalKeyProvider.from_operator_key(b64)
    p2 = make_key_provider("local", operator_key=raw)
    wrapped = p1.wrap(DEK, CTX)
    assert p2.unwrap(wrapped, CTX) == DEK
    with pytest.raises(KeyProviderError, match="cannot be rotated"):
        p1.rotate_kek()
    assert b64 not in repr(p1)


def test_factory(tmp_path: Path) -> None:
    provider = make_key_provider("local", directory=tmp_path)
    assert provider.name == "local"
    with pytest.raises(KeyProviderError, match="unknown key provider 'nope'"):
        make_key_provider("nope")
    with pytest.raises(KeyProviderError, match="needs 'directory'"):
        make_key_provider("local")


def test_wrapped_key_serialisation() -> None:
    wk = WrappedKey("aws-kms", "arn:aws:kms:us-east-1:1:key/x", b"\x00\x01blob")
    assert WrappedKey.from_bytes(wk.to_bytes()) == wk
    assert "blob" not in repr(wk)
    for bad in (b"", b"LVWK", b"XXXX\x01", wk.to_bytes()[:12], b"LVWK\x01\x00\x00\x00\x00x"):
        with pytest.raises(Exception, match=r"malformed|format"):
            WrappedKey.from_bytes(bad)
    with pytest.raises(Exception, match="format version 2"):
        WrappedKey.from_bytes(b"LVWK\x02" + wk.to_bytes()[5:])


def test_concurrent_create_and_rotate_lose_no_kek(tmp_path: Path) -> None:
    barrier = threading.Barrier(6)
    providers: list[LocalKeyProvider] = []

    def create() -> None:
        barrier.wait()
        providers.append(LocalKeyProvider.open(tmp_path))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wrapped = providers[0].wrap(DEK, CTX)
    assert all(p.unwrap(wrapped, CTX) == DEK for p in providers)  # one shared v1

    ids: list[str] = []

    def rotate(p: LocalKeyProvider) -> None:
        barrier.wait()
        ids.append(p.rotate_kek())

    threads = [threading.Thread(target=rotate, args=(p,)) for p in providers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == [f"v{n}:scoped" for n in range(2, 8)]
    final = LocalKeyProvider.open(tmp_path)
    assert final.current_kek_id() == "v7:scoped"
    for p in providers:  # every KEK any instance wrapped with survived in the file
        assert final.unwrap(p.wrap(DEK, CTX), CTX) == DEK
