"""Local blob directory (the embedded default): ``<root>/<project uuid>/<blob_id>``.

Directories are 0700 and files 0600. A put writes a temporary file in the project directory
(``.<blob_id>.<random>.tmp``, never a valid blob id), fsyncs it, ``os.replace``-s it over the
blob and fsyncs the directory, so a blob is visible whole or not at all, also across a crash
(``clear_incomplete`` removes the temporary files a crash left behind).
Reads open with ``O_NOFOLLOW``. Content is ciphertext only (see :mod:`labelvault.storage.base`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from labelvault.storage.base import (
    BLOB_ID_PATTERN,
    BlobInfo,
    BlobNotFoundError,
    BlobStoreError,
    ClosingChunks,
    check_blob_id,
    check_chunks,
    check_project_id,
)

__all__ = ["LocalBlobStore"]

DEFAULT_READ_CHUNK = 1024 * 1024
# a put's temporary file: ``.<blob_id>.<mkstemp's random part>.tmp``
_TEMPORARY = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.[A-Za-z0-9_]+\.tmp")


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_chunks(fh: BinaryIO, size: int) -> Iterator[bytes]:
    while piece := fh.read(size):
        yield piece


class LocalBlobStore:
    """Blobs as files under ``root``; one 0700 directory per project."""

    def __init__(self, root: Path | str, *, read_chunk_size: int = DEFAULT_READ_CHUNK) -> None:
        if read_chunk_size < 1:
            raise BlobStoreError("read chunk size must be positive")
        self.root = Path(root)
        self._chunk = read_chunk_size
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobStoreError(f"blob directory {self.root} cannot be created") from exc

    @classmethod
    def from_settings(cls, **settings: Any) -> LocalBlobStore:
        """``root=...`` (the blob directory), optional ``read_chunk_size``."""
        if settings.get("root") is None:
            raise BlobStoreError("local blob store needs 'root'")
        return cls(
            settings["root"],
            read_chunk_size=int(settings.get("read_chunk_size") or DEFAULT_READ_CHUNK),
        )

    @property
    def kind(self) -> str:
        return "local"

    def project_dir(self, project_id: uuid.UUID) -> Path:
        return self.root / str(check_project_id(project_id))

    def _path(self, project_id: uuid.UUID, blob_id: str) -> Path:
        return self.project_dir(project_id) / check_blob_id(blob_id)

    def put(self, project_id: uuid.UUID, blob_id: str, chunks: Iterable[bytes]) -> int:
        path = self._path(project_id, blob_id)
        check_chunks(chunks)
        directory = path.parent
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)  # mkdir's mode is subject to the umask
            fd, tmp = tempfile.mkstemp(prefix=f".{blob_id}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise BlobStoreError(f"cannot write to blob directory of project {project_id}") from exc
        written = 0
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    written += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _fsync_dir(directory)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise BlobStoreError(f"writing blob {blob_id} failed: {exc.strerror}") from exc
            raise
        return written

    def get(self, project_id: uuid.UUID, blob_id: str) -> Iterator[bytes]:
        path = self._path(project_id, blob_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {blob_id} not found") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BlobNotFoundError(f"blob {blob_id} not found") from None
            raise BlobStoreError(f"reading blob {blob_id} failed: {exc.strerror}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BlobNotFoundError(f"blob {blob_id} not found")
        fh = os.fdopen(fd, "rb")
        return ClosingChunks(_read_chunks(fh, self._chunk), fh.close)

    def exists(self, project_id: uuid.UUID, blob_id: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self._path(project_id, blob_id)).st_mode)
        except FileNotFoundError:
            return False

    def delete(self, project_id: uuid.UUID, blob_id: str) -> None:
        path = self._path(project_id, blob_id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {blob_id} not found") from None
        except OSError as exc:
            raise BlobStoreError(f"deleting blob {blob_id} failed: {exc.strerror}") from exc
        _fsync_dir(path.parent)

    def list_ids(self, project_id: uuid.UUID) -> Iterator[str]:
        return iter([b.blob_id for b in self.list_blobs(project_id)])

    def _entries(self, project_id: uuid.UUID) -> list[os.DirEntry[str]]:
        try:
            return list(os.scandir(self.project_dir(project_id)))
        except FileNotFoundError:
            return []

    def list_blobs(self, project_id: uuid.UUID) -> Iterator[BlobInfo]:
        found = []
        for e in self._entries(project_id):
            if BLOB_ID_PATTERN.fullmatch(e.name) is None:
                continue
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                st = e.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    found.append(BlobInfo(e.name, _utc(st.st_mtime)))
        return iter(sorted(found, key=lambda b: b.blob_id))

    def clear_incomplete(self, project_id: uuid.UUID, started_before: dt.datetime) -> int:
        removed = failed = 0
        for e in self._entries(project_id):
            if not _TEMPORARY.fullmatch(e.name):
                continue
            try:
                if _utc(e.stat(follow_symlinks=False).st_mtime) >= started_before:
                    continue  # a put may still be writing it
                os.unlink(e.path)
            except FileNotFoundError:  # its put finished or failed meanwhile
                continue
            except OSError:
                failed += 1
                continue
            removed += 1
        if removed:
            _fsync_dir(self.project_dir(project_id))
        if failed:
            raise BlobStoreError(f"{failed} unfinished write(s) of {project_id} not removed")
        return removed

    def purge_project(self, project_id: uuid.UUID) -> int:
        directory = self.project_dir(project_id)
        count = sum(1 for _ in self.list_ids(project_id))
        try:
            shutil.rmtree(directory)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise BlobStoreError(f"purging project {project_id} failed: {exc.strerror}") from exc
        _fsync_dir(self.root)
        return count

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"
