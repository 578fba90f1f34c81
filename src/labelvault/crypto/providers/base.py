"""The key-provider interface and the stored form of a wrapped (encrypted) data key."""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from labelvault.crypto.context import CONTROL_SCOPE
from labelvault.crypto.errors import CryptoError, DecryptionError, KeyProviderError

__all__ = [
    "GeneratesDataKeys",
    "KeyProvider",
    "WrappedKey",
    "check_scope",
    "refuse_control_destroy",
    "scope_for_unwrap",
    "scope_for_wrap",
]

_SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def check_scope(scope: str) -> str:
    """A key scope usable in provider key names: ``control`` or a project id (``[A-Za-z0-9_-]``,
    starting with a letter or digit, at most 128 characters)."""
    if not isinstance(scope, str) or not _SCOPE.match(scope):
        raise KeyProviderError("invalid key scope: expected 'control' or a project id")
    return scope


def scope_for_wrap(context: Mapping[str, str]) -> str:
    """The scope a wrap belongs to (``context["scope"]``); every wrap must name one."""
    scope = context.get("scope")
    if scope is None:
        raise KeyProviderError("wrap context needs a 'scope' (a project id or 'control')")
    return check_scope(scope)


def scope_for_unwrap(context: Mapping[str, str]) -> str:
    """The scope of an unwrap; a context without a valid scope cannot match any wrap."""
    scope = context.get("scope")
    if not isinstance(scope, str) or not _SCOPE.match(scope):
        raise DecryptionError("wrapped key failed authentication (context has no valid scope)")
    return scope


def refuse_control_destroy(scope: str) -> str:
    check_scope(scope)
    if scope == CONTROL_SCOPE:
        raise KeyProviderError("the control scope's key material cannot be destroyed")
    return scope


_MAGIC = b"LVWK"
_FORMAT = 1
_LEN = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted under a provider's KEK: safe to store (``to_bytes`` for a bytea)."""

    provider: str
    kek_id: str
    wrapped: bytes

    def __post_init__(self) -> None:
        if not self.provider or not self.kek_id or not self.wrapped:
            raise CryptoError("wrapped key needs a provider, a KEK id and wrapped bytes")

    def to_bytes(self) -> bytes:
        """``LVWK | format | len+provider | len+kek_id | wrapped`` (lengths uint16 BE)."""
        p = self.provider.encode("utf-8")
        k = self.kek_id.encode("utf-8")
        if len(p) > 0xFFFF or len(k) > 0xFFFF:
            raise CryptoError("wrapped key provider or KEK id is too long")
        return (
            _MAGIC + bytes([_FORMAT]) + _LEN.pack(len(p)) + p + _LEN.pack(len(k)) + k + self.wrapped
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> WrappedKey:
        data = bytes(data)
        try:
            if data[:4] != _MAGIC:
                raise ValueError("magic")
            if data[4] != _FORMAT:
                raise CryptoError(f"unsupported wrapped key format version {data[4]}")
            pos = 5
            (plen,) = _LEN.unpack_from(data, pos)
            provider = data[pos + 2 : pos + 2 + plen].decode("utf-8")
            pos += 2 + plen
            (klen,) = _LEN.unpack_from(data, pos)
            kek_id = data[pos + 2 : pos + 2 + klen].decode("utf-8")
            pos += 2 + klen
            if len(provider) == 0 or len(kek_id) == 0 or pos >= len(data):
                raise ValueError("short")
            return cls(provider, kek_id, data[pos:])
        except CryptoError:
            raise
        except (ValueError, IndexError, struct.error, UnicodeDecodeError):
            raise CryptoError("malformed wrapped key") from None

    def __repr__(self) -> str:
        return (
            f"WrappedKey(provider={self.provider!r}, kek_id={self.kek_id!r}, "
            f"{len(self.wrapped)} bytes)"
        )


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps data keys under a key-encryption key (KEK) that never leaves the provider.

    ``context`` (scope, purpose, version) is bound into every wrapping: unwrapping with a
    different context fails with :class:`~labelvault.crypto.errors.DecryptionError`.

    Every scope (``context["scope"]``: a project id or ``"control"``) is wrapped under key
    material *specific to that scope* held by the provider, outside the database:
    :meth:`destroy_scope` destroys it, so every copy of that scope's wrapped keys (including
    those in database backups) becomes permanently unreadable
    (:class:`~labelvault.crypto.errors.DataDestroyedError`). A destroyed scope is terminal:
    never wrap for it again (scopes are project ids and are not reused).
    """

    @property
    def name(self) -> str: ...

    def wrap(self, plaintext_key: bytes, context: Mapping[str, str]) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes: ...

    def rewrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        """Re-encrypt to the current KEK version (server-side where the backend supports it)."""
        ...

    def current_kek_id(self, scope: str = CONTROL_SCOPE) -> str:
        """The KEK id that new wraps of ``scope`` record (compare with a stored ``kek_id`` to
        find wraps a rewrap job still has to move)."""
        ...

    def rotate_kek(self, scope: str = CONTROL_SCOPE) -> str:
        """Start a new KEK version for ``scope`` and return ``current_kek_id(scope)``; older
        versions can still unwrap. (The local provider rotates its root KEK, shared by all
        scopes.)"""
        ...

    def destroy_scope(self, scope: str) -> None:
        """Crypto-shred ``scope``: destroy its key material in the provider. Idempotent;
        ``"control"`` is refused with KeyProviderError."""
        ...


@runtime_checkable
class GeneratesDataKeys(Protocol):
    """Optional: the provider can generate a data key itself (e.g. KMS GenerateDataKey)."""

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, WrappedKey]: ...
