"""TEST AND BENCHMARK ONLY: a "cipher" that does not encrypt.

:class:`PlaintextCipher` has the interface of :class:`labelvault.keys.values.ProjectCipher` and
stores values as they are (with the same header length, so row sizes match). It exists to
measure the overhead of encryption on the same code path (``bench/crypto_bench.py``). The
platform never uses it: :func:`labelvault.keys.values.project_cipher` always returns a real
cipher, and a test checks that no module of the platform refers to this one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from labelvault.crypto import CryptoError
from labelvault.keys.values import RowId, new_blob_id
from labelvault.storage import BlobStore

__all__ = ["PlaintextCipher"]

_PAD = b"\x00" * 33  # the size of an encrypted value's header, nonce and tag


class PlaintextCipher:
    """NOT ENCRYPTION. Same interface as ProjectCipher; for benchmarks and tests only."""

    def __init__(self, project_id: uuid.UUID | None, *, i_know_this_is_plaintext: bool) -> None:
        if not i_know_this_is_plaintext:
            raise CryptoError("PlaintextCipher stores plaintext; it is for benchmarks only")
        self._project_id = project_id

    @property
    def project_id(self) -> uuid.UUID | None:
        return self._project_id

    def encrypt(self, table: str, row_id: RowId, column: str, plaintext: bytes) -> bytes:
        return _PAD + bytes(plaintext)

    def decrypt(self, table: str, row_id: RowId, column: str, blob: bytes) -> bytes:
        return bytes(blob)[len(_PAD) :]

    def encrypt_json(self, table: str, row_id: RowId, column: str, value: Any) -> bytes:
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return self.encrypt(table, row_id, column, data)

    def decrypt_json(self, table: str, row_id: RowId, column: str, blob: bytes) -> Any:
        return json.loads(self.decrypt(table, row_id, column, blob))

    def put_blob(
        self,
        blobs: BlobStore,
        table: str,
        row_id: RowId,
        chunks: Iterable[bytes],
        *,
        blob_id: str | None = None,
    ) -> str:
        if self._project_id is None:
            raise CryptoError("blobs belong to a project")
        blob_id = blob_id or new_blob_id()
        blobs.put(self._project_id, blob_id, chunks)
        return blob_id

    def get_blob(
        self, blobs: BlobStore, table: str, row_id: RowId, blob_id: str
    ) -> Iterator[bytes]:
        if self._project_id is None:
            raise CryptoError("blobs belong to a project")
        return blobs.get(self._project_id, blob_id)

    def __repr__(self) -> str:
        return "PlaintextCipher(NOT ENCRYPTING)"
