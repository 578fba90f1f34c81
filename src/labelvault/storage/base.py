"""The blob store interface: per-project, write-once-visible storage of encrypted blobs.

A blob store only ever sees CIPHERTEXT. Callers pass the output of
:func:`labelvault.crypto.encrypt_stream` (bound to the project's data key and an encryption
context naming the blob) to :meth:`BlobStore.put`, and feed :meth:`BlobStore.get` into
:func:`labelvault.crypto.decrypt_stream`. Stores add no encryption of their own and must never
be given plaintext: media, export bundles and every other blob are encrypted before they get
here, so a leaked bucket or directory (or a backup of one) reveals only sizes and ids, and
crypto-shredding a project makes its blobs unreadable even before they are purged.

Isolation: every project has its own container (a directory, or an S3 bucket); blob ids are
validated so they can never name a path or object outside it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, runtime_checkable

from labelvault.kernel.errors import (
    InvalidInputError,
    LabelVaultError,
    NotFoundError,
    ServiceUnavailableError,
)

__all__ = [
    "BLOB_ID_PATTERN",
    "BlobInfo",
    "BlobNotFoundError",
    "BlobStore",
    "BlobStoreError",
    "ClosingChunks",
    "check_blob_id",
    "check_chunks",
    "check_project_id",
]

BLOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob's id and when it was last written (UTC)."""

    blob_id: str
    written_at: dt.datetime


class BlobNotFoundError(NotFoundError):
    """No such blob in this project (or no such project container)."""

    code = "blob_not_found"


class BlobStoreError(ServiceUnavailableError):
    """The storage backend failed (I/O error, S3 error); nothing partial is visible."""

    code = "blob_store_error"


def check_blob_id(blob_id: str) -> str:
    """``^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$``: no separators, no leading dot, no NUL."""
    if not isinstance(blob_id, str) or BLOB_ID_PATTERN.fullmatch(blob_id) is None:
        raise InvalidInputError(
            "blob id must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
            field="blob_id",
        )
    return blob_id


def check_project_id(project_id: uuid.UUID) -> uuid.UUID:
    if not isinstance(project_id, uuid.UUID):
        raise InvalidInputError("project id must be a UUID", field="project_id")
    return project_id


def check_chunks(chunks: Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(chunks, (bytes, bytearray, memoryview, str)):
        raise InvalidInputError("pass an iterable of byte chunks, not a single bytes/str value")
    return chunks


class ClosingChunks(Iterator[bytes]):
    """A stream of chunks that releases its source (file, HTTP body) when exhausted, on error,
    on :meth:`close`, at the end of a ``with`` block, or when garbage-collected."""

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None]) -> None:
        self._chunks = chunks
        self._close: Callable[[], None] | None = close

    def __iter__(self) -> ClosingChunks:
        return self

    def __next__(self) -> bytes:
        if self._close is None:
            raise StopIteration
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            close()

    def __enter__(self) -> ClosingChunks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


@runtime_checkable
class BlobStore(Protocol):
    """Per-project blob storage. Every method validates ``project_id`` (a UUID) and ``blob_id``
    (:func:`check_blob_id`; InvalidInputError otherwise). Content is ciphertext only."""

    @property
    def kind(self) -> str: ...

    def put(self, project_id: uuid.UUID, blob_id: str, chunks: Iterable[bytes]) -> int:
        """Store the stream; returns the bytes written. Atomic: the blob (a new one, or the
        replacement of an existing one) becomes visible whole or not at all, also when
        ``chunks`` raises part-way."""
        ...

    def get(self, project_id: uuid.UUID, blob_id: str) -> Iterator[bytes]:
        """Stream the blob (BlobNotFoundError, raised by this call, if it does not exist)."""
        ...

    def exists(self, project_id: uuid.UUID, blob_id: str) -> bool: ...

    def delete(self, project_id: uuid.UUID, blob_id: str) -> None:
        """Delete the blob (every stored version of it); BlobNotFoundError if absent."""
        ...

    def purge_project(self, project_id: uuid.UUID) -> int:
        """Delete every blob of the project and its container; returns how many blobs."""
        ...

    def list_ids(self, project_id: uuid.UUID) -> Iterator[str]:
        """Ids of the project's blobs (sorted; empty if the project has none)."""
        ...

    def list_blobs(self, project_id: uuid.UUID) -> Iterator[BlobInfo]:
        """The project's blobs with the time each was last written (sorted by id, which is
        ASCII: byte order)."""
        ...

    def clear_incomplete(self, project_id: uuid.UUID, started_before: dt.datetime) -> int:
        """Remove the remains of writes that never finished (a temporary file, a pending
        multipart upload) started before ``started_before``; returns how many."""
        ...


def discard_blob(blobs: BlobStore, project_id: uuid.UUID, blob_id: str) -> None:
    """Delete a blob nothing needs any more, at best effort: one already gone, or a store that
    cannot answer now, is left (an unreferenced ciphertext, never an error for the caller)."""
    with contextlib.suppress(LabelVaultError):
        blobs.delete(project_id, blob_id)
