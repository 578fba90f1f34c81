"""Data keys and the encrypted value format (AES-256-GCM).

Value format (all integers big-endian)::

    version (1 byte) | key version (uint32) | nonce (12 random bytes) | ciphertext || tag (16)

The associated data is ``version || key version || EncryptionContext.encode()``, so changing the
header, decrypting under another context, or flipping any bit fails with
:class:`DecryptionError`.

Key material is kept in a ``bytearray`` so it can be zeroed by :meth:`DataKey.wipe`. Python
cannot guarantee there are no other copies (the AEAD object made for each operation holds an
immutable copy until it is garbage-collected; the allocator may leave stale copies); wiping
narrows the window, it does not close it.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from labelvault.crypto.context import EncryptionContext
from labelvault.crypto.errors import CryptoError, DecryptionError

__all__ = [
    "FORMAT_VERSION",
    "KEY_BYTES",
    "MAX_ENCRYPTIONS",
    "NONCE_BYTES",
    "ROTATE_AFTER_ENCRYPTIONS",
    "TAG_BYTES",
    "DataKey",
    "KeyLookup",
    "decrypt_value",
    "encrypt_value",
    "peek_key_version",
]

FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
ROTATE_AFTER_ENCRYPTIONS = 2**30
#: Hard stop, well under the 2**32 random-nonce bound of NIST SP 800-38D section 8.3.
MAX_ENCRYPTIONS = 2**31
MAX_KEY_VERSION = 2**32 - 1
MAX_PLAINTEXT = 2**31 - 1 - TAG_BYTES

_HEADER = struct.Struct(">BI")
HEADER_BYTES = _HEADER.size
MIN_VALUE_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES


class DataKey:
    """A 256-bit data key with its version; plaintext only in memory, never serialised."""

    __slots__ = ("_encryptions", "_lock", "_material", "_version", "_wiped")

    def __init__(self, version: int, material: bytes | bytearray) -> None:
        if not isinstance(version, int) or not 0 <= version <= MAX_KEY_VERSION:
            raise CryptoError("data key version must be an integer in 0..2**32-1")
        if len(material) != KEY_BYTES:
            raise CryptoError(f"data key must be {KEY_BYTES} bytes")
        self._version = version
        self._material = bytearray(material)
        self._lock = threading.RLock()
        self._encryptions = 0
        self._wiped = False

    @classmethod
    def generate(cls, version: int) -> DataKey:
        """A fresh random key (os.urandom)."""
        return cls(version, os.urandom(KEY_BYTES))

    @property
    def version(self) -> int:
        return self._version

    @property
    def encryptions(self) -> int:
        """Number of AEAD encryptions performed with this key object (in this process)."""
        with self._lock:
            return self._encryptions

    @property
    def needs_rotation(self) -> bool:
        return self.encryptions >= ROTATE_AFTER_ENCRYPTIONS

    @property
    def wiped(self) -> bool:
        return self._wiped

    def restore_usage(self, count: int) -> None:
        """Restore a persisted usage counter (counts are per process unless persisted)."""
        with self._lock:
            self._encryptions = count

    def _reserve(self, invocations: int = 1) -> None:
        """Count ``invocations`` uses of the key; refuse past :data:`MAX_ENCRYPTIONS`."""
        with self._lock:
            self._check_live()
            if self._encryptions + invocations > MAX_ENCRYPTIONS:
                raise CryptoError(
                    "data key reached its encryption limit; rotate the key before writing more"
                )
            self._encryptions += invocations

    def _aead_for_encryption(self) -> AESGCM:
        """Reserve one use of the key and return an AEAD object for it."""
        with self._lock:
            self._reserve(1)
            return AESGCM(bytes(self._material))

    def _aead_for_decryption(self) -> AESGCM:
        with self._lock:
            self._check_live()
            return AESGCM(bytes(self._material))

    def _material_copy(self) -> bytes:
        """Plaintext key bytes, for wrapping by a key provider only."""
        with self._lock:
            self._check_live()
            return bytes(self._material)

    def _check_live(self) -> None:
        if self._wiped:
            raise CryptoError(
                f"data key version {self._version} was wiped from memory; load it again"
            )

    def wipe(self) -> None:
        """Overwrite the key material with zeros; later use raises :class:`CryptoError`."""
        with self._lock:
            for i in range(len(self._material)):
                self._material[i] = 0
            self._wiped = True

    def __repr__(self) -> str:
        state = ", wiped" if self._wiped else ""
        return f"DataKey(version={self._version}, encryptions={self._encryptions}{state})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("DataKey must not be pickled or copied out of memory")


KeyLookup = Callable[[int], DataKey]


def _header(key_version: int) -> bytes:
    return _HEADER.pack(FORMAT_VERSION, key_version)


def encrypt_value(key: DataKey, plaintext: bytes, ctx: EncryptionContext) -> bytes:
    """Encrypt ``plaintext`` for the place described by ``ctx``."""
    if len(plaintext) > MAX_PLAINTEXT:
        raise CryptoError("value too large for single-shot encryption; use labelvault.crypto.blobs")
    aead = key._aead_for_encryption()
    header = _header(key.version)
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + aead.encrypt(nonce, plaintext, header + ctx.encode())


def peek_key_version(blob: bytes) -> int:
    """The data key version a value was encrypted under (not authenticated: a hint for jobs)."""
    if len(blob) < MIN_VALUE_BYTES:
        raise DecryptionError("ciphertext is truncated")
    fmt, key_version = _HEADER.unpack_from(blob)
    if fmt != FORMAT_VERSION:
        raise DecryptionError(
            f"unsupported ciphertext format version {fmt} (this build reads {FORMAT_VERSION})"
        )
    return int(key_version)


def decrypt_value(lookup: KeyLookup, blob: bytes, ctx: EncryptionContext) -> bytes:
    """Decrypt a value; ``lookup(version)`` returns the data key (e.g. ``ProjectKeyring.get``)."""
    blob = bytes(blob)
    key_version = peek_key_version(blob)
    key = lookup(key_version)
    if key.version != key_version:
        raise CryptoError("key lookup returned a key of another version")
    header = blob[:HEADER_BYTES]
    nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    body = blob[HEADER_BYTES + NONCE_BYTES :]
    try:
        return key._aead_for_decryption().decrypt(nonce, body, header + ctx.encode())
    except InvalidTag:
        raise DecryptionError() from None
