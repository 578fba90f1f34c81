"""HashiCorp Vault Transit key provider (hvac).

One Transit key per scope: ``<key_name>-<scope>`` for a project scope, ``<key_name>`` for
``"control"``. Each must be a *derived* key (``derived=true``, type ``aes256-gcm96``); scope
keys are created by the provider on the first wrap for the scope (``ensure_key``). The context
mapping is canonically encoded and sent, base64, as Transit ``context``, so each context gets
its own derived key and unwrapping under another context fails. Derivation context (rather than
``associated_data``) is used because Transit ``rewrap`` accepts ``context`` but not associated
data, and ``rewrap`` is what lets a rotation job move wraps to the newest key version without
plaintext ever leaving Vault.

Wrapped bytes are the Transit ciphertext string (``vault:vN:...``) in ASCII; the KEK id is
``<transit key name>:vN``. ``rotate_kek(scope)`` calls ``keys/<name>/rotate``; old versions keep
decrypting until an operator raises ``min_decryption_version`` (only after a rewrap job reports
zero wraps on old versions).

``destroy_scope`` sets ``deletion_allowed`` on the scope's key and deletes it; every wrap of
the scope (including copies in database backups) then fails with DataDestroyedError ("encryption
key not found"). Vault's own storage backups taken before that still hold the key. Give the
LabelVault token only ``update`` (not ``create``) on ``transit/encrypt/*`` so an encrypt can
never silently re-create a deleted key; the provider creates keys through ``transit/keys/*``.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping
from typing import Any

import hvac
from hvac import exceptions as hvac_exc

from labelvault.crypto.context import CONTROL_SCOPE, encode_mapping
from labelvault.crypto.errors import DataDestroyedError, DecryptionError, KeyProviderError
from labelvault.crypto.providers.base import (
    WrappedKey,
    check_scope,
    refuse_control_destroy,
    scope_for_unwrap,
    scope_for_wrap,
)

__all__ = ["VaultTransitKeyProvider", "transit_context", "transit_key_version"]

_CIPHERTEXT = re.compile(r"^vault:v(\d+):[A-Za-z0-9+/=]+$")


def transit_context(context: Mapping[str, str]) -> str:
    """Base64 of the canonical context encoding (Transit ``context`` parameter)."""
    return base64.b64encode(b"labelvault/transit/v1" + encode_mapping(context)).decode("ascii")


def transit_key_version(ciphertext: str) -> int:
    """The key version of a ``vault:vN:...`` ciphertext."""
    m = _CIPHERTEXT.match(ciphertext)
    if m is None:
        raise KeyProviderError("not a Vault Transit ciphertext")
    return int(m.group(1))


def _key_missing(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, hvac_exc.InvalidPath) or (
        isinstance(exc, hvac_exc.InvalidRequest)
        and ("key not found" in text or "no existing key" in text)
    )


def _fail(op: str, exc: Exception, scope: str | None = None) -> Exception:
    text = str(exc).lower()
    if isinstance(exc, hvac_exc.InvalidRequest) and (
        "authentication failed" in text or "invalid ciphertext" in text
    ):
        return DecryptionError("wrapped key failed authentication in Vault (wrong key or context)")
    if scope is not None and scope != CONTROL_SCOPE and _key_missing(exc):
        return DataDestroyedError(
            f"data destroyed: the Vault Transit key of scope {scope} was destroyed "
            "(crypto-shredded)"
        )
    return KeyProviderError(f"Vault Transit {op} failed: {type(exc).__name__}")


class VaultTransitKeyProvider:
    """Wraps data keys with one (derived) Vault Transit key per scope."""

    def __init__(self, client: Any, key_name: str, mount_point: str = "transit") -> None:
        if not key_name or "/" in key_name:
            raise KeyProviderError("Vault Transit key provider needs a plain key name")
        self._client = client
        self._key_name = key_name
        self._mount = mount_point
        self._ready: set[str] = set()  # transit keys known to exist (created or checked)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, **settings: Any) -> VaultTransitKeyProvider:
        """``url``, ``token`` (or a ready ``client``), ``key_name``, ``mount_point``,
        ``create_key`` (create the control key if missing), ``verify`` (TLS CA bundle or bool)."""
        client = settings.get("client")
        if client is None:
            client = hvac.Client(
                url=settings.get("url"),
                token=settings.get("token"),
                verify=settings.get("verify", True),
            )
        provider = cls(
            client, str(settings.get("key_name") or ""), settings.get("mount_point", "transit")
        )
        if settings.get("create_key"):
            provider.ensure_key()
        return provider

    @property
    def name(self) -> str:
        return "vault-transit"

    @property
    def _transit(self) -> Any:
        return self._client.secrets.transit

    def key_name_of(self, scope: str) -> str:
        """Transit key of a scope: ``<key_name>`` for control, ``<key_name>-<scope>`` else."""
        check_scope(scope)
        return self._key_name if scope == CONTROL_SCOPE else f"{self._key_name}-{scope}"

    def ensure_key(self, scope: str = CONTROL_SCOPE) -> str:
        """Create the scope's derived aes256-gcm96 key if missing; refuse a non-derived one."""
        name = self.key_name_of(scope)
        with self._lock:
            if name in self._ready:
                return name
        try:
            try:
                info = self._transit.read_key(name=name, mount_point=self._mount)
            except hvac_exc.InvalidPath:
                self._transit.create_key(
                    name=name,
                    key_type="aes256-gcm96",
                    derived=True,
                    exportable=False,
                    allow_plaintext_backup=False,
                    mount_point=self._mount,
                )
                info = None
        except hvac_exc.VaultError as exc:
            raise _fail("key setup", exc) from None
        if info is not None and not info["data"].get("derived"):
            raise KeyProviderError(f"Vault Transit key {name!r} must be derived")
        with self._lock:
            self._ready.add(name)
        return name

    def _kek_id(self, name: str, version: int) -> str:
        return f"{name}:v{version}"

    def current_kek_id(self, scope: str = CONTROL_SCOPE) -> str:
        name = self.ensure_key(scope) if scope != CONTROL_SCOPE else self.key_name_of(scope)
        try:
            info = self._transit.read_key(name=name, mount_point=self._mount)
        except hvac_exc.VaultError as exc:
            raise _fail("read key", exc, scope) from None
        return self._kek_id(name, int(info["data"]["latest_version"]))

    def rotate_kek(self, scope: str = CONTROL_SCOPE) -> str:
        name = self.key_name_of(scope)
        try:
            self._transit.rotate_key(name=name, mount_point=self._mount)
        except hvac_exc.VaultError as exc:
            raise _fail("rotate", exc, scope) from None
        return self.current_kek_id(scope)

    def _wrapped(self, name: str, response: Any) -> WrappedKey:
        ciphertext = str(response["data"]["ciphertext"])
        return WrappedKey(
            self.name,
            self._kek_id(name, transit_key_version(ciphertext)),
            ciphertext.encode("ascii"),
        )

    def _ciphertext(self, wrapped: WrappedKey, name: str) -> str:
        if wrapped.provider != self.name:
            raise KeyProviderError(
                f"key was wrapped by provider {wrapped.provider!r}, not vault-transit"
            )
        if not wrapped.kek_id.startswith(name + ":v"):
            if wrapped.kek_id.startswith(self._key_name + "-") or wrapped.kek_id.startswith(
                self._key_name + ":v"
            ):  # one of our scope keys, presented under another scope's context
                raise DecryptionError("wrapped key failed authentication (another scope's key)")
            raise KeyProviderError("key was wrapped by another Vault Transit key")
        try:
            ciphertext = wrapped.wrapped.decode("ascii")
        except UnicodeDecodeError:
            raise KeyProviderError("malformed Vault Transit ciphertext") from None
        transit_key_version(ciphertext)
        return ciphertext

    def wrap(self, plaintext_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        scope = scope_for_wrap(context)
        name = self.ensure_key(scope)
        try:
            out = self._transit.encrypt_data(
                name=name,
                plaintext=base64.b64encode(bytes(plaintext_key)).decode("ascii"),
                context=transit_context(context),
                mount_point=self._mount,
            )
        except hvac_exc.VaultError as exc:
            self._forget(name)
            raise _fail("encrypt", exc, scope) from None
        return self._wrapped(name, out)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        scope = scope_for_unwrap(context)
        name = self.key_name_of(scope)
        ciphertext = self._ciphertext(wrapped, name)
        try:
            out = self._transit.decrypt_data(
                name=name,
                ciphertext=ciphertext,
                context=transit_context(context),
                mount_point=self._mount,
            )
        except hvac_exc.VaultError as exc:
            raise _fail("decrypt", exc, scope) from None
        return base64.b64decode(out["data"]["plaintext"])

    def rewrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        """Transit ``rewrap`` to the latest key version; plaintext never leaves Vault."""
        scope = scope_for_unwrap(context)
        name = self.key_name_of(scope)
        ciphertext = self._ciphertext(wrapped, name)
        try:
            out = self._transit.rewrap_data(
                name=name,
                ciphertext=ciphertext,
                context=transit_context(context),
                mount_point=self._mount,
            )
        except hvac_exc.VaultError as exc:
            raise _fail("rewrap", exc, scope) from None
        return self._wrapped(name, out)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._ready.discard(name)

    def destroy_scope(self, scope: str) -> None:
        """Allow deletion of the scope's transit key and delete it; idempotent."""
        refuse_control_destroy(scope)
        name = self.key_name_of(scope)
        self._forget(name)
        try:
            try:
                self._transit.update_key_configuration(
                    name=name, deletion_allowed=True, mount_point=self._mount
                )
            except hvac_exc.VaultError as exc:
                if _key_missing(exc):
                    return  # never created, or already destroyed
                raise
            self._transit.delete_key(name=name, mount_point=self._mount)
        except hvac_exc.VaultError as exc:
            if not _key_missing(exc):
                raise _fail("delete key", exc) from None

    def __repr__(self) -> str:
        return f"VaultTransitKeyProvider(key={self._key_name!r}, mount={self._mount!r})"
