"""Encryption of control-plane secrets (project credentials, OIDC client secrets).

Values are encrypted under the ``control`` scope's data key, bound to their table, row and
column. The keyring is loaded once at start (``load``) so sealing is synchronous afterwards.
"""

from __future__ import annotations

from labelvault.crypto import (
    CONTROL_SCOPE,
    EncryptionContext,
    ProjectKeyring,
    decrypt_value,
    encrypt_value,
)
from labelvault.keys.service import KeyService


class ControlSealer:
    def __init__(self, keys: KeyService) -> None:
        self._keys = keys
        self._ring: ProjectKeyring | None = None

    async def load(self) -> None:
        self._ring = await self._keys.keyring(CONTROL_SCOPE)

    def _keyring(self) -> ProjectKeyring:
        self._keys.refresh_if_stale(CONTROL_SCOPE)  # picks up rotations by other processes
        ring = self._keys.cached(CONTROL_SCOPE) or self._ring
        if ring is None or ring.destroyed:
            raise RuntimeError("control keys are not loaded")
        self._ring = ring
        return ring

    def seal(self, plaintext: bytes, *, table: str, row: str, column: str) -> bytes:
        ctx = EncryptionContext.for_row(None, table, row, column)
        return encrypt_value(self._keyring().current, plaintext, ctx)

    def unseal(self, blob: bytes, *, table: str, row: str, column: str) -> bytes:
        ctx = EncryptionContext.for_row(None, table, row, column)
        return decrypt_value(self._keyring().get, blob, ctx)
