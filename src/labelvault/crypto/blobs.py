"""Streaming, chunked encryption of large blobs (images, export bundles) with bounded memory.

A STREAM-like construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015) over AES-256-GCM::

    header = magic "LVBF" | format (1) | key version (uint32) | salt (16) | nonce prefix (8)
             | chunk size (uint32)
    chunk i = AES-GCM(file_key, nonce = prefix || uint32(i),
                      aad = ctx.encode() || header || uint32(i) || final flag (1 byte))

Every chunk holds ``chunk_size`` plaintext bytes except the last, which holds 0..chunk_size and
is the only one flagged final. Reordering, dropping or duplicating chunks, truncation,
extension and splicing between files therefore fail with :class:`DecryptionError`.

``file_key = HKDF-SHA256(data key, salt, info="labelvault/blob/v1" || ctx)``: a per-file key
from a 128-bit random salt, so nonce prefixes of different files never share a key (a
collision of the 64-bit prefix alone is harmless). Each file counts as one use of the data key.

Decryption yields chunks as they authenticate: truncation of the *end* is only detected when
the iterator finishes, so treat output as provisional until it is exhausted without error.
No plaintext is written to disk by this module.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from labelvault.crypto.context import EncryptionContext
from labelvault.crypto.envelope import DataKey, KeyLookup
from labelvault.crypto.errors import CryptoError, DecryptionError

__all__ = [
    "BLOB_FORMAT_VERSION",
    "BLOB_HEADER_BYTES",
    "DEFAULT_CHUNK_SIZE",
    "decrypt_stream",
    "encrypt_file",
    "encrypt_stream",
    "peek_blob_key_version",
]

BLOB_MAGIC = b"LVBF"
BLOB_FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 1
MAX_CHUNK_SIZE = 16 * 1024 * 1024
_TAG = 16
_HEADER = struct.Struct(">4sBI16s8sI")
BLOB_HEADER_BYTES = _HEADER.size
_U32 = struct.Struct(">I")
_MAX_CHUNKS = 2**32

BlobSource = Iterable[bytes] | BinaryIO


def _pieces(src: BlobSource, size: int) -> Iterator[bytes]:
    read = getattr(src, "read", None)
    if callable(read):
        while piece := read(size):
            yield bytes(piece)
    else:
        assert not isinstance(src, (bytes, bytearray)), "pass an iterable of bytes, not bytes"
        for piece in src:
            if piece:
                yield bytes(piece)


def _file_aead(key: DataKey, salt: bytes, ctx: EncryptionContext) -> AESGCM:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"labelvault/blob/v1" + ctx.encode()
    )
    return AESGCM(hkdf.derive(key._material_copy()))


def _aad(ctx_bytes: bytes, header: bytes, index: int, final: bool) -> bytes:
    return ctx_bytes + header + _U32.pack(index) + (b"\x01" if final else b"\x00")


def encrypt_stream(
    key: DataKey,
    ctx: EncryptionContext,
    src: BlobSource,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """Encrypt ``src`` (file object or iterable of bytes); yields the header, then each chunk."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise CryptoError(f"chunk size must be in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    key._reserve(1)
    salt, prefix = os.urandom(16), os.urandom(8)
    header = _HEADER.pack(BLOB_MAGIC, BLOB_FORMAT_VERSION, key.version, salt, prefix, chunk_size)
    aead = _file_aead(key, salt, ctx)
    return _encrypt_chunks(aead, ctx.encode(), header, prefix, src, chunk_size)


def _encrypt_chunks(
    aead: AESGCM, ctx_bytes: bytes, header: bytes, prefix: bytes, src: BlobSource, size: int
) -> Iterator[bytes]:
    def seal(index: int, data: bytes, final: bool) -> bytes:
        if index >= _MAX_CHUNKS:
            raise CryptoError("blob too large: more than 2**32 chunks")
        return aead.encrypt(prefix + _U32.pack(index), data, _aad(ctx_bytes, header, index, final))

    yield header
    buf = bytearray()
    index = 0
    for piece in _pieces(src, size):
        buf += piece
        while len(buf) > size:  # more data follows, so this chunk is not the final one
            yield seal(index, bytes(buf[:size]), False)
            del buf[:size]
            index += 1
    yield seal(index, bytes(buf), True)


def _parse_header(header: bytes) -> tuple[int, bytes, bytes, int]:
    if len(header) < BLOB_HEADER_BYTES:
        raise DecryptionError("encrypted blob is truncated (incomplete header)")
    magic, fmt, key_version, salt, prefix, chunk_size = _HEADER.unpack(header)
    if magic != BLOB_MAGIC:
        raise DecryptionError("not a LabelVault encrypted blob (bad magic)")
    if fmt != BLOB_FORMAT_VERSION:
        raise DecryptionError(
            f"unsupported blob format version {fmt} (this build reads {BLOB_FORMAT_VERSION})"
        )
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise DecryptionError("encrypted blob header has an invalid chunk size")
    return int(key_version), salt, prefix, int(chunk_size)


def peek_blob_key_version(header: bytes) -> int:
    """Data key version of a blob, from its first bytes (for rotation jobs; not authenticated)."""
    return _parse_header(bytes(header[:BLOB_HEADER_BYTES]))[0]


def decrypt_stream(lookup: KeyLookup, ctx: EncryptionContext, src: BlobSource) -> Iterator[bytes]:
    """Decrypt an encrypted blob chunk by chunk; raises DecryptionError on any tampering."""
    pieces = _pieces(src, DEFAULT_CHUNK_SIZE + _TAG)
    buf = bytearray()
    eof = False

    def fill(n: int) -> None:
        nonlocal eof
        while not eof and len(buf) < n:
            piece = next(pieces, None)
            if piece is None:
                eof = True
            else:
                buf.extend(piece)

    fill(BLOB_HEADER_BYTES)
    header = bytes(buf[:BLOB_HEADER_BYTES])
    key_version, salt, prefix, size = _parse_header(header)
    del buf[:BLOB_HEADER_BYTES]
    key = lookup(key_version)
    if key.version != key_version:
        raise CryptoError("key lookup returned a key of another version")
    aead = _file_aead(key, salt, ctx)
    ctx_bytes = ctx.encode()
    sealed = size + _TAG

    def open_chunk(index: int, data: bytes, final: bool) -> bytes:
        try:
            nonce = prefix + _U32.pack(index)
            return aead.decrypt(nonce, data, _aad(ctx_bytes, header, index, final))
        except InvalidTag:
            raise DecryptionError() from None

    index = 0
    while True:
        fill(sealed + 1)
        if len(buf) > sealed:
            if index >= _MAX_CHUNKS - 1:
                raise DecryptionError("encrypted blob has too many chunks")
            yield open_chunk(index, bytes(buf[:sealed]), False)
            del buf[:sealed]
            index += 1
            continue
        if len(buf) < _TAG:
            raise DecryptionError("encrypted blob is truncated")
        last = open_chunk(index, bytes(buf), True)
        if last:
            yield last
        return


def encrypt_file(
    key: DataKey,
    ctx: EncryptionContext,
    path_in: Path | str,
    path_out: Path | str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> None:
    """Encrypt a file to ``path_out`` atomically (temporary 0600 file + rename)."""
    out = Path(path_out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fout, open(path_in, "rb") as fin:
            for part in encrypt_stream(key, ctx, fin, chunk_size=chunk_size):
                fout.write(part)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
