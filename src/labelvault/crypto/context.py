"""Encryption context (AEAD associated data) binding a ciphertext to where it is stored.

A value encrypted for ``(scope, table, row_id, column)`` only decrypts under exactly the same
context, so ciphertext cannot be moved between projects, tables, rows or columns.
The context is not secret and is reconstructed by the caller at decrypt time, never read from
the ciphertext.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from labelvault.crypto.errors import CryptoError

__all__ = [
    "AAD",
    "CONTEXT_VERSION",
    "CONTROL_SCOPE",
    "EncryptionContext",
    "encode_fields",
    "encode_mapping",
    "scope_of",
]

CONTEXT_VERSION = 1
CONTROL_SCOPE = "control"
_MAGIC = b"LVCTX"
_LEN = struct.Struct(">I")
_MAX_FIELD = 4096


def encode_fields(*fields: str | bytes) -> bytes:
    """Unambiguous encoding: each field is a uint32 big-endian length followed by its bytes."""
    out = bytearray()
    for f in fields:
        raw = f.encode("utf-8") if isinstance(f, str) else f
        out += _LEN.pack(len(raw))
        out += raw
    return bytes(out)


def encode_mapping(mapping: Mapping[str, str]) -> bytes:
    """Canonical encoding of a string mapping: sorted, every key and value length-prefixed."""
    items = sorted(mapping.items())
    flat: list[str] = []
    for k, v in items:
        if not isinstance(k, str) or not isinstance(v, str):
            raise CryptoError("encryption context keys and values must be strings")
        flat += [k, v]
    return _LEN.pack(len(items)) + encode_fields(*flat)


def scope_of(project_id: uuid.UUID | str | None) -> str:
    """The key scope of a project (its id as a string), or ``"control"`` for ``None``."""
    if project_id is None:
        return CONTROL_SCOPE
    return str(project_id)


@dataclass(frozen=True, slots=True)
class EncryptionContext:
    """Where a value lives: ``scope`` is a project id or ``"control"`` for the control plane."""

    scope: str
    table: str
    row_id: str
    column: str
    version: int = CONTEXT_VERSION

    def __post_init__(self) -> None:
        for name in ("scope", "table", "row_id", "column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise CryptoError(f"encryption context field {name!r} must be a non-empty string")
            if len(value) > _MAX_FIELD:
                raise CryptoError(f"encryption context field {name!r} is too long")
        if not isinstance(self.version, int) or not 1 <= self.version <= 255:
            raise CryptoError("encryption context version must be an integer in 1..255")

    @classmethod
    def for_row(
        cls,
        project_id: uuid.UUID | str | None,
        table: str,
        row_id: uuid.UUID | str | int,
        column: str,
    ) -> EncryptionContext:
        """Context for a column of a row; ``project_id=None`` means the control plane."""
        return cls(scope_of(project_id), table, str(row_id), column)

    def encode(self) -> bytes:
        """Canonical bytes used as associated data."""
        return (
            _MAGIC
            + bytes([self.version])
            + encode_fields(self.scope, self.table, self.row_id, self.column)
        )

    def as_mapping(self) -> dict[str, str]:
        """String mapping (e.g. for a KMS encryption context or logs; not secret)."""
        return {
            "scope": self.scope,
            "table": self.table,
            "row_id": self.row_id,
            "column": self.column,
            "context_version": str(self.version),
        }


AAD = EncryptionContext
