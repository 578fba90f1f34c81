"""Encrypting the values and blobs of a project (or of the control plane) for the domains.

Usage, in a request or job::

    cipher = await project_cipher(platform.keys, project_id)
    sealed = cipher.encrypt("items", item_id, "content", text.encode())
    ...
    text = cipher.decrypt("items", item_id, "content", row["content"]).decode()

Every value is AES-256-GCM under the scope's current data key, bound (associated data) to
``EncryptionContext.for_row(project, table, row id, column)``: a ciphertext moved to another
row, column, table or project fails with :class:`DecryptionError`, and one whose data key was
shredded fails with :class:`DataDestroyedError`; nothing ever decrypts to garbage. The columns
and blobs that hold such values are listed in :mod:`labelvault.keys.columns`.

Blobs (images, export bundles) are encrypted in chunks with bounded memory
(:func:`labelvault.crypto.encrypt_stream`), context column ``"blob"``, and stored in the
project's container of the blob store under a fresh random id. A blob id is never reused for
other content, so key rotation can re-encrypt a blob in place under the same id.

The cipher is synchronous (values are small) and looks the keyring up in the key service's
cache for every operation, so a rotation or a cache refresh is picked up at once. It produces
exactly the value format of :func:`labelvault.crypto.encrypt_value` (and reads any value that
function wrote), but keeps one AEAD object per key version and the encoded context prefix per
(table, column) for its lifetime, so a value costs one AES-GCM call, a nonce and the row id's
encoding: the encryption overhead stays small next to the database round trip. Create one
per request or batch with :func:`project_cipher`; do not keep one for longer than the key
cache TTL. A keyring pushed out of the bounded cache while a cipher is in use makes the next
operation fail with :class:`CryptoError` ("keyring is no longer in memory"); take a new cipher.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag

from labelvault.crypto import (
    CryptoError,
    DataDestroyedError,
    DataKey,
    DecryptionError,
    EncryptionContext,
    ProjectKeyring,
    decrypt_stream,
    encrypt_stream,
    peek_key_version,
    scope_of,
)
from labelvault.crypto.context import encode_fields
from labelvault.crypto.envelope import FORMAT_VERSION, HEADER_BYTES, MAX_PLAINTEXT, NONCE_BYTES
from labelvault.keys.service import KeyService
from labelvault.storage import BlobStore

__all__ = [
    "BLOB_COLUMN",
    "ProjectCipher",
    "ValueCipher",
    "get_blob",
    "new_blob_id",
    "project_cipher",
    "put_blob",
]

BLOB_COLUMN = "blob"
RowId = uuid.UUID | str | int
_HEADER = struct.Struct(">BI")
_LEN = struct.Struct(">I")
_MAX_FIELD = 4096
_BODY = HEADER_BYTES + NONCE_BYTES


class ValueCipher(Protocol):
    """What the domains use to seal and open values and blobs of one project."""

    @property
    def project_id(self) -> uuid.UUID | None: ...

    def encrypt(self, table: str, row_id: RowId, column: str, plaintext: bytes) -> bytes: ...

    def decrypt(self, table: str, row_id: RowId, column: str, blob: bytes) -> bytes: ...

    def encrypt_json(self, table: str, row_id: RowId, column: str, value: Any) -> bytes: ...

    def decrypt_json(self, table: str, row_id: RowId, column: str, blob: bytes) -> Any: ...

    def put_blob(
        self,
        blobs: BlobStore,
        table: str,
        row_id: RowId,
        chunks: Iterable[bytes],
        *,
        blob_id: str | None = None,
    ) -> str: ...

    def get_blob(
        self, blobs: BlobStore, table: str, row_id: RowId, blob_id: str
    ) -> Iterator[bytes]: ...


def new_blob_id() -> str:
    """A fresh random blob id (32 hex digits): says nothing about the row or its content."""
    return uuid.uuid4().hex


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


class ProjectCipher:
    """Seals and opens the values of one scope: a project, or (``project_id=None``) the control
    plane, which only the key-rotation job uses this way (the control plane seals through
    :class:`labelvault.keys.ControlSealer`)."""

    __slots__ = (
        "_hot",
        "_hot_current",
        "_hot_ring",
        "_keys",
        "_last",
        "_places",
        "_project_id",
        "scope",
    )

    def __init__(self, keys: KeyService, project_id: uuid.UUID | None, ring: ProjectKeyring):
        self._keys = keys
        self._project_id = project_id
        self.scope = scope_of(project_id)
        self._last = ring
        self._hot_ring: ProjectKeyring | None = None
        self._hot: dict[int, tuple[DataKey, Any]] = {}
        self._hot_current: tuple[DataKey, Any] | None = None
        self._places: dict[tuple[str, str], tuple[bytes, bytes]] = {}

    @property
    def project_id(self) -> uuid.UUID | None:
        return self._project_id

    # -- keys ----------------------------------------------------------------------------------
    def _ring(self) -> ProjectKeyring:
        self._keys.refresh_if_stale(self.scope)
        ring = self._keys.cached(self.scope)
        if ring is not None and not ring.destroyed:
            self._last = ring
            return ring
        if self._keys.is_shredded(self.scope):
            raise DataDestroyedError()
        if self._last.destroyed:
            raise CryptoError(
                f"the keyring of scope {self.scope} is no longer in memory; take a new cipher"
            )
        return self._last

    @property
    def current_version(self) -> int:
        """The data key version new values are encrypted under."""
        return self._ring().current.version

    def _current(self) -> DataKey:
        return self._ring().current

    def lookup(self, version: int) -> DataKey:
        """The data key of ``version`` (the ``lookup`` of ``decrypt_value``/``decrypt_stream``)."""
        return self._lookup_in(self._ring(), version)

    def _lookup_in(self, ring: ProjectKeyring, version: int) -> DataKey:
        if version in ring.versions:
            return ring.get(version)
        if version in self._keys.destroyed_versions(self.scope):
            raise DataDestroyedError(
                f"data destroyed: data key version {version} of this scope was destroyed"
            )
        raise DecryptionError(
            f"ciphertext names data key version {version}, which scope {self.scope} does not "
            "have (tampered, or written by a newer rotation: retry after the key cache refresh)"
        )

    def context(self, table: str, row_id: RowId, column: str) -> EncryptionContext:
        return EncryptionContext.for_row(self._project_id, table, row_id, column)

    # -- values --------------------------------------------------------------------------------
    def _key(self, version: int | None) -> tuple[DataKey, Any]:
        """(data key, AEAD object) of ``version`` (None: the current key) for one operation.

        AEAD objects are made once per keyring object. The key service never changes a keyring
        in place: a rotation or refresh installs a new keyring object (a new table here), and a
        shredded one is refused by :meth:`_ring`, so nothing stale is ever used."""
        ring = self._ring()
        if ring is not self._hot_ring:
            self._hot_ring, self._hot, self._hot_current = ring, {}, None
        if version is None:
            current = self._hot_current
            if current is None:
                current = self._hot_current = self._entry(ring, ring.current.version)
            return current
        entry = self._hot.get(version)
        if entry is None:
            entry = self._entry(ring, version)
        return entry

    def _entry(self, ring: ProjectKeyring, version: int) -> tuple[DataKey, Any]:
        entry = self._hot.get(version)
        if entry is None:
            key = self._lookup_in(ring, version)
            entry = (key, key._aead_for_decryption())  # refuses a wiped key
            self._hot[version] = entry
        return entry

    def _aad(self, header: bytes, table: str, row_id: RowId, column: str) -> bytes:
        """``header || EncryptionContext.for_row(project, table, row, column).encode()``."""
        place = self._places.get((table, column))
        if place is None:
            full = EncryptionContext.for_row(self._project_id, table, "r", column).encode()
            tail = encode_fields("r", column)
            place = (full[: len(full) - len(tail)], encode_fields(column))
            self._places[(table, column)] = place
        row = (row_id if row_id.__class__ is str else str(row_id)).encode()
        n = len(row)
        if not n or n > _MAX_FIELD:
            raise CryptoError("encryption context field 'row_id' must be a non-empty string")
        prefix, suffix = place
        return b"".join((header, prefix, _LEN.pack(n), row, suffix))

    def encrypt(self, table: str, row_id: RowId, column: str, plaintext: bytes) -> bytes:
        return self.encrypt_many(table, column, [(row_id, plaintext)])[0]

    def encrypt_many(
        self, table: str, column: str, values: Sequence[tuple[RowId, bytes]]
    ) -> list[bytes]:
        """:meth:`encrypt` of many rows' values of one column: one key lookup, one draw of
        random nonces (an import seals thousands at a time; each ``os.urandom`` call releases
        the interpreter lock, and waits to take it back)."""
        for _, plaintext in values:
            if not isinstance(plaintext, (bytes, bytearray)):
                raise CryptoError("encrypt takes bytes; use encrypt_json for structured values")
            if len(plaintext) > MAX_PLAINTEXT:
                raise CryptoError("value too large for single-shot encryption; use put_blob")
        if not values:
            return []
        key, aead = self._key(None)
        key._reserve(len(values))  # usage count: rotation threshold and hard limit
        header = _HEADER.pack(FORMAT_VERSION, key.version)
        nonces = os.urandom(NONCE_BYTES * len(values))
        sealed: list[bytes] = []
        for i, (row_id, plaintext) in enumerate(values):
            nonce = nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
            aad = self._aad(header, table, row_id, column)
            sealed.append(header + nonce + aead.encrypt(nonce, bytes(plaintext), aad))
        return sealed

    def decrypt(self, table: str, row_id: RowId, column: str, blob: bytes) -> bytes:
        blob = bytes(blob)
        try:
            _, aead = self._key(peek_key_version(blob))
            aad = self._aad(blob[:HEADER_BYTES], table, row_id, column)
            plain: bytes = aead.decrypt(blob[HEADER_BYTES:_BODY], blob[_BODY:], aad)
            return plain
        except InvalidTag:
            raise DecryptionError(
                f"{table}.{column} of row {row_id}: ciphertext failed authentication "
                "(wrong key, wrong context or tampered)",
                field=column,
            ) from None
        except DataDestroyedError:
            raise
        except DecryptionError as exc:
            raise DecryptionError(
                f"{table}.{column} of row {row_id}: {exc.message}", field=column
            ) from None

    def encrypt_json(self, table: str, row_id: RowId, column: str, value: Any) -> bytes:
        return self.encrypt(table, row_id, column, json_bytes(value))

    def decrypt_json(self, table: str, row_id: RowId, column: str, blob: bytes) -> Any:
        return json.loads(self.decrypt(table, row_id, column, blob))

    # -- blobs ---------------------------------------------------------------------------------
    def _project(self) -> uuid.UUID:
        if self._project_id is None:
            raise CryptoError("blobs belong to a project")
        return self._project_id

    def encrypt_chunks(self, table: str, row_id: RowId, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The encrypted stream of a blob of ``(table, row_id)`` (header, then chunks)."""
        return encrypt_stream(self._current(), self.context(table, row_id, BLOB_COLUMN), chunks)

    def decrypt_chunks(self, table: str, row_id: RowId, chunks: Iterable[bytes]) -> Iterator[bytes]:
        return _decrypt_named(
            decrypt_stream(self.lookup, self.context(table, row_id, BLOB_COLUMN), chunks),
            f"blob of {table} row {row_id}",
        )

    def put_blob(
        self,
        blobs: BlobStore,
        table: str,
        row_id: RowId,
        chunks: Iterable[bytes],
        *,
        blob_id: str | None = None,
    ) -> str:
        """Encrypt ``chunks`` for ``(table, row_id)`` and store them; returns the blob id.

        Blocking (file or S3 I/O): call it through ``asyncio.to_thread`` from async code.
        """
        project = self._project()
        blob_id = blob_id or new_blob_id()
        blobs.put(project, blob_id, self.encrypt_chunks(table, row_id, chunks))
        return blob_id

    def get_blob(
        self, blobs: BlobStore, table: str, row_id: RowId, blob_id: str
    ) -> Iterator[bytes]:
        """Stream the plaintext of a stored blob; DecryptionError on any tampering (treat
        output as provisional until the iterator is exhausted)."""
        return self.decrypt_chunks(table, row_id, blobs.get(self._project(), blob_id))

    def __repr__(self) -> str:
        return f"ProjectCipher(scope={self.scope!r})"


def _decrypt_named(stream: Iterator[bytes], what: str) -> Iterator[bytes]:
    try:
        yield from stream
    except DataDestroyedError:
        raise
    except DecryptionError as exc:
        raise DecryptionError(f"{what}: {exc.message}", field="blob") from None


async def project_cipher(keys: KeyService, project_id: uuid.UUID | None) -> ProjectCipher:
    """A cipher for the project's values (loads its keyring; DataDestroyedError if shredded)."""
    ring = await keys.keyring(scope_of(project_id))
    return ProjectCipher(keys, project_id, ring)


def put_blob(
    cipher: ValueCipher,
    blobs: BlobStore,
    table: str,
    row_id: RowId,
    chunks: Iterable[bytes],
    *,
    blob_id: str | None = None,
) -> str:
    """Encrypt and store a blob of ``(table, row_id)`` of the cipher's project; its id."""
    return cipher.put_blob(blobs, table, row_id, chunks, blob_id=blob_id)


def get_blob(
    cipher: ValueCipher, blobs: BlobStore, table: str, row_id: RowId, blob_id: str
) -> Iterator[bytes]:
    """The decrypted chunks of a stored blob."""
    return cipher.get_blob(blobs, table, row_id, blob_id)
