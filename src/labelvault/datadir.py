"""The data directory of the embedded default: its layout, permissions and generated secrets.

```
<data_dir>/            0700
  pg/                  the embedded PostgreSQL cluster (owned by the postgres OS user)
  secrets/             0700: generated credentials, one 0600 file each
  keys/                0700: the local keyring (crypto)
  blobs/               encrypted blob store
  tls/                 self-signed certificate for localhost
```
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from labelvault.kernel.errors import InvalidInputError


class DataDirError(InvalidInputError):
    pass


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    """Create ``path`` (and parents) or check that it is usable; a clear error if not."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except PermissionError:
        raise DataDirError(f"cannot create {path}: permission denied") from None
    except OSError as exc:
        raise DataDirError(f"cannot create {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataDirError(f"data directory {path} is not writable")
    return path


def ensure_data_dir(data_dir: Path) -> Path:
    root = ensure_dir(data_dir.resolve())
    try:
        root.chmod(root.stat().st_mode & ~(stat.S_IWGRP | stat.S_IWOTH))
    except OSError:
        raise DataDirError(f"cannot set permissions on {root}") from None
    return root


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically write a 0600 file: a crash leaves the old content or the new, never half."""
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_private_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DataDirError(f"{path} is readable by other users; run chmod 600 on it")
    return path.read_bytes()


def ensure_secret(path: Path, *, nbytes: int = 32) -> str:
    """Return the secret stored at ``path``, generating it (URL-safe, ``nbytes`` random) first."""
    if path.exists():
        return read_private_file(path).decode("ascii").strip()
    value = secrets.token_urlsafe(nbytes)
    write_private_file(path, value.encode("ascii"))
    return value
