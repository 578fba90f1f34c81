"""Vault Transit provider. Server tests run only when VAULT_ADDR and VAULT_TOKEN are set
(e.g. ``vault server -dev``); the transit engine is enabled at ``transit/`` if missing."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from typing import Any

import hvac
import pytest
from hvac import exceptions as hvac_exc

from labelvault.crypto import (
    DataDestroyedError,
    DecryptionError,
    KeyProvider,
    KeyProviderError,
    WrappedKey,
    make_key_provider,
)
from labelvault.crypto.providers.vault_transit import (
    VaultTransitKeyProvider,
    _fail,
    transit_context,
    transit_key_version,
)

CTX = {"scope": "project-a", "purpose": "data-key", "version": "1"}
DEK = bytes(range(32))

needs_vault = pytest.mark.skipif(
    not (os.environ.get("VAULT_ADDR") and os.environ.get("VAULT_TOKEN")),
    reason="set VAULT_ADDR and VAULT_TOKEN to run against a real Vault",
)


def test_transit_helpers() -> None:
    assert transit_key_version("vault:v12:abc=") == 12
    for bad in ("vault:vx:abc", "abc", "vault:v1:", "vault:v1:abc:def"):
        with pytest.raises(KeyProviderError):
            transit_key_version(bad)
    a = base64.b64decode(transit_context(CTX))
    assert a == base64.b64decode(transit_context(dict(reversed(list(CTX.items())))))
    assert a != base64.b64decode(transit_context({**CTX, "scope": "project-b"}))


def test_error_mapping() -> None:
    auth = hvac_exc.InvalidRequest("cipher: message authentication failed")
    assert isinstance(_fail("decrypt", auth), DecryptionError)
    assert isinstance(_fail("decrypt", hvac_exc.Forbidden("permission denied")), KeyProviderError)
    assert not isinstance(_fail("decrypt", hvac_exc.Forbidden("x")), DecryptionError)


def test_rejects_foreign_wraps_without_server() -> None:
    provider = VaultTransitKeyProvider(hvac.Client(url="http://127.0.0.1:9"), "lv-kek")
    with pytest.raises(KeyProviderError, match="aws-kms"):
        provider.unwrap(WrappedKey("aws-kms", "lv-kek:v1", b"vault:v1:abc="), CTX)
    with pytest.raises(KeyProviderError, match="another Vault Transit key"):
        provider.unwrap(WrappedKey("vault-transit", "other:v1", b"vault:v1:abc="), CTX)
    with pytest.raises(KeyProviderError, match="not a Vault Transit ciphertext"):
        provider.rewrap(WrappedKey("vault-transit", "lv-kek-project-a:v1", b"garbage"), CTX)
    with pytest.raises(KeyProviderError):
        VaultTransitKeyProvider(hvac.Client(url="http://127.0.0.1:9"), "")


class FakeTransit:
    """Models the Transit API surface the provider uses (HTTP errors as hvac raises them)."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    def _key(self, name: str, missing: type[Exception] = hvac_exc.InvalidRequest) -> Any:
        if name not in self.keys:
            if missing is hvac_exc.InvalidPath:
                raise hvac_exc.InvalidPath("")
            raise hvac_exc.InvalidRequest("encryption key not found")
        return self.keys[name]

    def read_key(self, name: str, mount_point: str) -> Any:
        k = self._key(name, hvac_exc.InvalidPath)
        return {"data": {"derived": k["derived"], "latest_version": k["version"]}}

    def create_key(self, name: str, **kw: Any) -> None:
        self.calls.append(("create", name))
        assert kw["derived"] is True and kw["exportable"] is False
        self.keys[name] = {"derived": True, "version": 1, "deletion_allowed": False}

    def rotate_key(self, name: str, mount_point: str) -> None:
        self._key(name, hvac_exc.InvalidPath)["version"] += 1

    def update_key_configuration(self, name: str, deletion_allowed: bool, **kw: Any) -> None:
        self.calls.append(("config", name))
        self._key(name, hvac_exc.InvalidPath)["deletion_allowed"] = deletion_allowed

    def delete_key(self, name: str, mount_point: str) -> None:
        self.calls.append(("delete", name))
        if not self._key(name, hvac_exc.InvalidPath)["deletion_allowed"]:
            raise hvac_exc.InvalidRequest("deletion is not allowed for this key")
        del self.keys[name]

    def encrypt_data(self, name: str, plaintext: str, context: str, **kw: Any) -> Any:
        k = self._key(name)
        body = base64.b64encode(f"{name}|{context}|{plaintext}".encode()).decode()
        return {"data": {"ciphertext": f"vault:v{k['version']}:{body}"}}

    def decrypt_data(self, name: str, ciphertext: str, context: str, **kw: Any) -> Any:
        self._key(name)
        body = base64.b64decode(ciphertext.split(":", 2)[2]).decode()
        key_name, ctx, plaintext = body.split("|")
        if (key_name, ctx) != (name, context):
            raise hvac_exc.InvalidRequest("cipher: message authentication failed")
        return {"data": {"plaintext": plaintext}}

    def rewrap_data(self, name: str, ciphertext: str, context: str, **kw: Any) -> Any:
        plaintext = self.decrypt_data(name, ciphertext, context)["data"]["plaintext"]
        return self.encrypt_data(name, plaintext, context)


class FakeClient:
    def __init__(self) -> None:
        self.secrets = type("S", (), {"transit": FakeTransit()})()


def ctx(scope: str, version: int = 1) -> dict[str, str]:
    return {"scope": scope, "purpose": "data-key", "version": str(version)}


def test_one_transit_key_per_scope_and_destroy_scope_offline() -> None:
    client = FakeClient()
    transit: FakeTransit = client.secrets.transit
    p = VaultTransitKeyProvider(client, "lv")
    p.ensure_key()
    a1 = p.wrap(DEK, ctx("project-a"))
    a2 = p.wrap(DEK, ctx("project-a", 2))
    b = p.wrap(DEK, ctx("project-b"))
    c = p.wrap(DEK, ctx("control"))
    assert set(transit.keys) == {"lv", "lv-project-a", "lv-project-b"}
    assert [n for op, n in transit.calls if op == "create"].count("lv-project-a") == 1
    assert (a1.kek_id, b.kek_id, c.kek_id) == ("lv-project-a:v1", "lv-project-b:v1", "lv:v1")
    assert p.current_kek_id("project-a") == "lv-project-a:v1"
    assert p.rotate_kek("project-a") == "lv-project-a:v2"
    a3 = p.rewrap(a1, ctx("project-a"))
    assert a3.kek_id == "lv-project-a:v2" and p.unwrap(a3, ctx("project-a")) == DEK
    with pytest.raises(DecryptionError):
        p.unwrap(a1, ctx("project-a", 2))
    with pytest.raises(DecryptionError, match="another scope"):
        p.unwrap(a1, ctx("project-b"))  # the KEK id names another scope's key
    with pytest.raises(DecryptionError, match="another scope"):
        p.unwrap(c, ctx("project-b"))
    with pytest.raises(KeyProviderError, match="another Vault Transit key"):
        p.unwrap(WrappedKey("vault-transit", "other:v1", a1.wrapped), ctx("project-a"))
    backup = [WrappedKey.from_bytes(w.to_bytes()) for w in (a1, a2, a3)]

    p.destroy_scope("project-a")

    assert "lv-project-a" not in transit.keys
    assert transit.calls[-2:] == [("config", "lv-project-a"), ("delete", "lv-project-a")]
    for w, v in zip([a1, a2, a3, *backup], [1, 2, 1, 1, 2, 1], strict=True):
        with pytest.raises(DataDestroyedError, match="project-a was destroyed"):
            p.unwrap(w, ctx("project-a", v))
    with pytest.raises(DataDestroyedError):
        p.rewrap(a1, ctx("project-a"))
    assert p.unwrap(b, ctx("project-b")) == DEK and p.unwrap(c, ctx("control")) == DEK
    p.destroy_scope("project-a")  # idempotent
    p.destroy_scope("never-used")
    with pytest.raises(KeyProviderError, match="control"):
        p.destroy_scope("control")
    assert "lv" in transit.keys


def test_missing_control_key_is_not_a_shred() -> None:
    p = VaultTransitKeyProvider(FakeClient(), "lv")
    with pytest.raises(KeyProviderError) as info:
        p.unwrap(WrappedKey("vault-transit", "lv:v1", b"vault:v1:abc="), ctx("control"))
    assert not isinstance(info.value, DataDestroyedError)


@pytest.fixture()
def vault_provider() -> Iterator[KeyProvider]:
    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    if "transit/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("transit", path="transit")
    name = f"labelvault-test-{uuid.uuid4().hex[:12]}"
    provider = make_key_provider("vault-transit", client=client, key_name=name, create_key=True)
    yield provider
    for key in (name, f"{name}-project-a"):
        try:
            client.secrets.transit.update_key_configuration(key, deletion_allowed=True)
            client.secrets.transit.delete_key(key)
        except hvac_exc.InvalidPath:
            pass


@needs_vault
def test_vault_round_trip_rotation_rewrap(vault_provider: KeyProvider) -> None:
    p = vault_provider
    assert p.current_kek_id().endswith(":v1")
    old = p.wrap(DEK, CTX)
    assert old.wrapped.startswith(b"vault:v1:")
    assert p.unwrap(WrappedKey.from_bytes(old.to_bytes()), CTX) == DEK
    with pytest.raises(DecryptionError):
        p.unwrap(old, {**CTX, "scope": "project-b"})
    new_id = p.rotate_kek("project-a")
    assert new_id.endswith("-project-a:v2") and p.current_kek_id("project-a") == new_id
    assert p.current_kek_id().endswith(":v1")  # the control key was not rotated
    assert p.unwrap(old, CTX) == DEK
    moved = p.rewrap(old, CTX)
    assert moved.kek_id == new_id and moved.wrapped.startswith(b"vault:v2:")
    assert p.unwrap(moved, CTX) == DEK
    p.destroy_scope("project-a")
    for w in (old, moved):
        with pytest.raises(DataDestroyedError):
            p.unwrap(w, CTX)
    p.destroy_scope("project-a")
