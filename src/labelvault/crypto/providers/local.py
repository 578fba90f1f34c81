"""Local key provider: versioned 256-bit root KEKs in a 0600 keyring file, or one operator KEK.

Keyring file (``<directory>/keyring.json``, mode 0600, directory 0700)::

    {"format": 1, "current": "v2",
     "keks": {"v1": {"key": "<base64>", "created": "..."}, ...},
     "scopes": {"<scope>": {"salt": "<base64 of 32 bytes>", "created": "..."}, ...},
     "destroyed": {"<scope>": "<when>", ...}}

Per-scope KEKs (crypto-shredding that also defeats database backups): each scope (a project
id or ``"control"``) gets a random 32-byte salt, created on its first wrap and persisted
atomically under the keyring's file lock. The scope KEK is::

    HKDF-SHA256(root KEK of version vN, salt, info = "labelvault/scope-kek/v1" || scope)

and the KEK id recorded in a wrap is ``"vN:scoped"``. :meth:`LocalKeyProvider.destroy_scope`
deletes the salt (atomic rewrite) and leaves a tombstone, so every copy of that scope's wrapped
keys - old or new, in the database or in any backup of it - fails with DataDestroyedError.
:meth:`rotate_kek` adds a root version; ``rewrap`` moves a wrap to it with the same salt.

Wrapping is AES-256-GCM with the context mapping and KEK id as associated data; wrapped bytes
are ``nonce (12) || ciphertext || tag``. Writes are atomic (temporary 0600 file in the same
directory, fsync, ``os.replace``, fsync of the directory). Every operation checks whether the
file changed (inode, size, mtime) and reloads it, so a shred or rotation by another process is
seen at the next wrap/unwrap.

Operator-supplied single-key mode (``operator_key=``): the KEK lives outside LabelVault. Give
it a ``directory`` too and the salts (only; never the operator key) are kept in
``<directory>/scope-salts.json`` with the same guarantees (KEK id ``"operator:scoped"``).
Without a directory there is nowhere to keep salts: wraps use the operator KEK directly
(KEK id ``"operator"``) and :meth:`destroy_scope` raises ``KeyProviderError("crypto-shredding
needs a keyring directory")``. Adding a directory later is supported: a rewrap job moves old
``"operator"`` wraps to per-scope KEKs (``current_kek_id`` differs from their KEK id).

Limits: shredding is only as good as the deletion of the salt. A copy of the keyring (or salts)
file taken before ``destroy_scope`` still holds it; back the keyring up separately from the
database, with a retention no longer than your shredding promise, or use AWS KMS / Vault.
Wraps made before per-scope KEKs existed (KEK id ``"vN"``) still unwrap (except for a
destroyed scope) so a rewrap job can move them; old root versions keep them readable.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from labelvault.crypto.context import CONTROL_SCOPE, encode_fields, encode_mapping
from labelvault.crypto.errors import (
    CryptoError,
    DataDestroyedError,
    DecryptionError,
    KeyProviderError,
)
from labelvault.crypto.providers.base import (
    WrappedKey,
    refuse_control_destroy,
    scope_for_unwrap,
    scope_for_wrap,
)
from labelvault.crypto.secrets import check_private_file

__all__ = [
    "KEYRING_FILENAME",
    "SCOPES_FILENAME",
    "LocalKeyProvider",
    "derive_scope_kek",
    "load_operator_kek",
]

KEYRING_FILENAME = "keyring.json"
SCOPES_FILENAME = "scope-salts.json"
SCOPED_SUFFIX = ":scoped"
_KEK_BYTES = 32
_SALT_BYTES = 32
_NONCE = 12
_AAD_LABEL = b"labelvault/local-wrap/v1"  # wraps directly under a root KEK (legacy / no salts)
_AAD_LABEL_SCOPED = b"labelvault/local-wrap/v2"
_SCOPE_INFO = b"labelvault/scope-kek/v1"
_OPERATOR_KEK_ID = "operator"
_NEEDS_DIRECTORY = "crypto-shredding needs a keyring directory"

_Sig = tuple[int, int, int]


def load_operator_kek(raw: str | bytes) -> bytes:
    """Parse an operator KEK: exactly 32 raw bytes, or base64 of 32 bytes (whitespace ignored)."""
    if isinstance(raw, bytes) and len(raw) == _KEK_BYTES:
        return raw
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    try:
        key = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEK_BYTES:
        raise KeyProviderError("operator KEK must be 32 raw bytes or base64 of 32 bytes")
    return key


def derive_scope_kek(root: bytes, salt: bytes, scope: str) -> bytes:
    """HKDF-SHA256(root, salt, info = "labelvault/scope-kek/v1" || scope), 32 bytes."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=_KEK_BYTES,
        salt=salt,
        info=_SCOPE_INFO + scope.encode("utf-8"),
    )
    return hkdf.derive(root)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class LocalKeyProvider:
    """Key provider backed by a local keyring file (or a single operator-supplied KEK)."""

    def __init__(
        self,
        keks: Mapping[str, bytes],
        current: str,
        path: Path | None = None,
        *,
        keks_in_file: bool = True,
    ) -> None:
        if current not in keks:
            raise KeyProviderError("current KEK is missing from the keyring")
        self._keks: dict[str, bytes] = dict(keks)
        self._current = current
        self._path = path  # keyring.json, or scope-salts.json in operator mode; None: no salts
        self._keks_in_file = keks_in_file
        self._created: dict[str, str] = {}
        self._salts: dict[str, bytes] = {}
        self._salt_created: dict[str, str] = {}
        self._destroyed: dict[str, str] = {}
        self._sig: _Sig | None = None
        self._lock = threading.RLock()

    @property
    def name(self) -> str:
        return "local"

    @property
    def scoped(self) -> bool:
        """True when wraps use per-scope KEKs (there is a file to keep the salts in)."""
        return self._path is not None

    @classmethod
    def open(cls, directory: Path | str, *, create: bool = True) -> LocalKeyProvider:
        """Open (or create, with one fresh KEK) the keyring in ``directory``."""
        path = Path(directory) / KEYRING_FILENAME
        if not path.exists():
            if not create:
                raise KeyProviderError(f"keyring file {path} does not exist")
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            provider = cls({"v1": os.urandom(_KEK_BYTES)}, "v1", path)
            if provider._save(exclusive=True):
                return provider
            # another process created the keyring first: use theirs
        provider = cls({"v1": b"\0" * _KEK_BYTES}, "v1", path)
        provider._reload()
        return provider

    @classmethod
    def from_operator_key(
        cls, raw: str | bytes, directory: Path | str | None = None
    ) -> LocalKeyProvider:
        """A provider with one KEK given by the operator (file or env value); cannot rotate.

        ``directory`` holds the per-scope salts (``scope-salts.json``); without it wraps are not
        per scope and :meth:`destroy_scope` raises KeyProviderError.
        """
        kek = load_operator_kek(raw)
        if directory is None:
            return cls({_OPERATOR_KEK_ID: kek}, _OPERATOR_KEK_ID)
        path = Path(directory) / SCOPES_FILENAME
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        provider = cls({_OPERATOR_KEK_ID: kek}, _OPERATOR_KEK_ID, path, keks_in_file=False)
        with provider._lock:
            provider._refresh()
        return provider

    @classmethod
    def from_settings(cls, **settings: Any) -> LocalKeyProvider:
        """``directory=...`` (keyring) or ``operator_key=...`` (raw value; with an optional
        ``directory`` for the per-scope salts)."""
        if settings.get("operator_key") is not None:
            return cls.from_operator_key(settings["operator_key"], settings.get("directory"))
        if settings.get("directory") is None:
            raise KeyProviderError("local key provider needs 'directory' or 'operator_key'")
        return cls.open(settings["directory"], create=bool(settings.get("create", True)))

    # -- persistence ---------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        """Replace the in-memory state by the file's (caller holds ``self._lock``)."""
        try:
            check_private_file(path, forbidden_bits=0o077, what="keyring file")
        except CryptoError as exc:
            raise KeyProviderError(exc.message) from None
        try:
            st = os.stat(path)
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != 1:
                raise ValueError("format")
            if self._keks_in_file:
                keks = {
                    str(kid): base64.b64decode(entry["key"], validate=True)
                    for kid, entry in doc["keks"].items()
                }
                created = {str(kid): str(e.get("created", "")) for kid, e in doc["keks"].items()}
                current = str(doc["current"])
            else:
                keks, created, current = self._keks, self._created, self._current
            scopes = doc.get("scopes", {})
            salts = {
                str(s): base64.b64decode(entry["salt"], validate=True)
                for s, entry in scopes.items()
            }
            salt_created = {str(s): str(e.get("created", "")) for s, e in scopes.items()}
            destroyed = {str(s): str(when) for s, when in doc.get("destroyed", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise KeyProviderError(f"keyring file {path} is unreadable or malformed") from None
        if (
            current not in keks
            or any(len(k) != _KEK_BYTES for k in keks.values())
            or any(len(s) != _SALT_BYTES for s in salts.values())
            or set(salts) & set(destroyed)
        ):
            raise KeyProviderError(f"keyring file {path} is inconsistent")
        self._keks, self._created, self._current = keks, created, current
        self._salts, self._salt_created, self._destroyed = salts, salt_created, destroyed
        self._sig = (st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload(self) -> None:
        """Reload from the file (if there is one and it exists)."""
        with self._lock:
            if self._path is None:
                return
            if not self._keks_in_file and not self._path.exists():
                self._salts, self._salt_created, self._destroyed, self._sig = {}, {}, {}, None
                return
            self._load(self._path)

    def _refresh(self) -> None:
        """Reload if the file changed since we last read or wrote it (one ``stat``)."""
        if self._path is None:
            return
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            if self._keks_in_file:
                raise KeyProviderError(f"keyring file {self._path} disappeared") from None
            sig = None
        else:
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        if sig != self._sig:
            self._reload()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialise read-modify-write of the keyring across processes (flock on a lock file)."""
        assert self._path is not None
        fd = os.open(self._path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _document(self) -> dict[str, Any]:
        now = _now()
        doc: dict[str, Any] = {"format": 1}
        if self._keks_in_file:
            doc["current"] = self._current
            doc["keks"] = {
                kid: {"key": _b64(k), "created": self._created.get(kid) or now}
                for kid, k in self._keks.items()
            }
        doc["scopes"] = {
            s: {"salt": _b64(salt), "created": self._salt_created.get(s) or now}
            for s, salt in self._salts.items()
        }
        doc["destroyed"] = dict(self._destroyed)
        return doc

    def _save(self, *, exclusive: bool = False) -> bool:
        """Atomically write the file; with ``exclusive``, only if it does not exist yet."""
        assert self._path is not None
        data = json.dumps(self._document(), indent=1, sort_keys=True).encode("utf-8")
        directory = self._path.parent
        fd, tmp = tempfile.mkstemp(prefix=".keyring-", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                try:
                    os.link(tmp, self._path)  # atomic create-if-absent
                except FileExistsError:
                    return False
                finally:
                    os.unlink(tmp)
            else:
                os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        st = os.stat(self._path)  # we hold the file lock (or just created it): this is ours
        self._sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        return True

    def _mutate(self, change: Callable[[], bool]) -> None:
        """Under the file lock: reload, apply ``change()``, save; roll back memory on failure."""
        with self._lock, self._file_lock():
            self._reload()
            if not change():
                return
            try:
                self._save()
            except BaseException:
                self._sig = None  # force a reload from the (unchanged) file next time
                with contextlib.suppress(KeyProviderError):
                    self._reload()
                raise

    # -- keys ------------------------------------------------------------------------------------
    @staticmethod
    def _aad(label: bytes, kek_id: str, context: Mapping[str, str]) -> bytes:
        return encode_fields(label, kek_id, encode_mapping(context))

    def current_kek_id(self, scope: str = CONTROL_SCOPE) -> str:
        """``"vN:scoped"`` (per-scope KEKs, whatever the scope) or ``"operator"`` without salts."""
        with self._lock:
            self._refresh()
            return self._current + SCOPED_SUFFIX if self.scoped else self._current

    def rotate_kek(self, scope: str = CONTROL_SCOPE) -> str:
        """Add a root KEK version (shared by every scope; ``scope`` is ignored)."""
        if self._path is None or not self._keks_in_file:
            raise KeyProviderError(
                "an operator-supplied KEK cannot be rotated here; supply a new key and rewrap"
            )

        def change() -> bool:
            n = 1 + max((int(k[1:]) for k in self._keks if k[1:].isdigit()), default=0)
            kek_id = f"v{n}"
            self._keks[kek_id] = os.urandom(_KEK_BYTES)
            self._created[kek_id] = _now()
            self._current = kek_id
            return True

        with self._lock:
            self._mutate(change)
            return self._current + SCOPED_SUFFIX

    def _salt_for_wrap(self, scope: str) -> bytes:
        """The scope's salt, created (and persisted) on first use. Caller holds ``_lock``."""
        salt = self._salts.get(scope)
        if salt is not None:
            return salt

        def change() -> bool:
            if scope in self._destroyed or scope in self._salts:
                return False  # destroyed meanwhile, or another process created it
            self._salts[scope] = os.urandom(_SALT_BYTES)
            self._salt_created[scope] = _now()
            return True

        self._mutate(change)
        if scope in self._destroyed:
            raise self._destroyed_error(scope)
        return self._salts[scope]

    @staticmethod
    def _destroyed_error(scope: str) -> DataDestroyedError:
        return DataDestroyedError(
            f"data destroyed: the key material of scope {scope} was destroyed (crypto-shredded)"
        )

    def wrap(self, plaintext_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        scope = scope_for_wrap(context)
        with self._lock:
            self._refresh()
            root_id = self._current
            root = self._keks[root_id]
            if self.scoped:
                if scope in self._destroyed:
                    raise self._destroyed_error(scope)
                kek_id = root_id + SCOPED_SUFFIX
                kek = derive_scope_kek(root, self._salt_for_wrap(scope), scope)
                label = _AAD_LABEL_SCOPED
            else:
                kek_id, kek, label = root_id, root, _AAD_LABEL
        nonce = os.urandom(_NONCE)
        ct = AESGCM(kek).encrypt(nonce, bytes(plaintext_key), self._aad(label, kek_id, context))
        return WrappedKey(self.name, kek_id, nonce + ct)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        if wrapped.provider != self.name:
            raise KeyProviderError(f"key was wrapped by provider {wrapped.provider!r}, not local")
        scope = scope_for_unwrap(context)
        scoped = wrapped.kek_id.endswith(SCOPED_SUFFIX)
        root_id = wrapped.kek_id[: -len(SCOPED_SUFFIX)] if scoped else wrapped.kek_id
        with self._lock:
            self._refresh()
            if scope in self._destroyed:
                raise self._destroyed_error(scope)
            root = self._keks.get(root_id)
            if root is None:
                raise KeyProviderError(f"KEK {wrapped.kek_id!r} is not in the local keyring")
            if scoped:
                if self._path is None:
                    raise KeyProviderError(
                        "this key was wrapped under a per-scope KEK, but no keyring directory "
                        "with the scope salts is configured"
                    )
                salt = self._salts.get(scope)
                if salt is None:  # never wrapped for here (not destroyed: no tombstone)
                    raise DecryptionError(
                        f"wrapped key failed authentication: scope {scope} has no key material "
                        "in this keyring (wrong context, or the keyring was replaced)"
                    )
                kek = derive_scope_kek(root, salt, scope)
                label = _AAD_LABEL_SCOPED
            else:
                kek, label = root, _AAD_LABEL
        blob = wrapped.wrapped
        try:
            return AESGCM(kek).decrypt(
                blob[:_NONCE], blob[_NONCE:], self._aad(label, wrapped.kek_id, context)
            )
        except (InvalidTag, ValueError):
            raise DecryptionError(
                "wrapped key failed authentication (wrong KEK or context)"
            ) from None

    def rewrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        """Unwrap and wrap under the current KEK; the plaintext never leaves this method."""
        return self.wrap(self.unwrap(wrapped, context), context)

    def destroy_scope(self, scope: str) -> None:
        """Delete the scope's salt (atomic rewrite) and tombstone it; idempotent."""
        refuse_control_destroy(scope)
        if self._path is None:
            raise KeyProviderError(_NEEDS_DIRECTORY)

        def change() -> bool:
            if scope in self._destroyed and scope not in self._salts:
                return False
            self._salts.pop(scope, None)
            self._salt_created.pop(scope, None)
            self._destroyed[scope] = _now()
            return True

        self._mutate(change)

    def destroyed_scopes(self) -> dict[str, str]:
        """Tombstones: destroyed scope -> when (no key material)."""
        with self._lock:
            self._refresh()
            return dict(self._destroyed)

    def __repr__(self) -> str:
        where = str(self._path) if self._keks_in_file and self._path else "operator key"
        return f"LocalKeyProvider({where}, current={self._current!r})"
