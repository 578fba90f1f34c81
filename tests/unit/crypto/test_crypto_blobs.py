from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelvault.crypto import (
    CryptoError,
    DataKey,
    DecryptionError,
    EncryptionContext,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
    peek_blob_key_version,
)
from labelvault.crypto.blobs import BLOB_HEADER_BYTES

CTX = EncryptionContext("11111111-1111-1111-1111-111111111111", "blobs", "asset-1", "content")
KEY = DataKey.generate(4)
CHUNK = 1024
SEALED = CHUNK + 16


def lookup(version: int) -> DataKey:
    if version != KEY.version:
        raise CryptoError(f"unknown key version {version}")
    return KEY


def enc(data: bytes, ctx: EncryptionContext = CTX, chunk_size: int = CHUNK) -> bytes:
    return b"".join(encrypt_stream(KEY, ctx, io.BytesIO(data), chunk_size=chunk_size))


def dec(blob: bytes, ctx: EncryptionContext = CTX) -> bytes:
    return b"".join(decrypt_stream(lookup, ctx, [blob]))


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[BLOB_HEADER_BYTES:]
    return blob[:BLOB_HEADER_BYTES], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 7])
def test_round_trip_sizes(size: int) -> None:
    data = os.urandom(size)
    blob = enc(data)
    assert dec(blob) == data
    # one final chunk always exists; full chunks only while more data follows
    assert len(blob) == BLOB_HEADER_BYTES + size + 16 * (max(size - 1, 0) // CHUNK + 1)
    assert peek_blob_key_version(blob) == 4


def test_default_chunk_size_one_mib_and_odd_tail() -> None:
    data = os.urandom(1024 * 1024 + 12345)
    parts = list(encrypt_stream(KEY, CTX, io.BytesIO(data)))
    assert len(parts) == 1 + 17  # header + 16 full chunks + tail
    # decrypt from an iterable of odd-sized pieces
    blob = b"".join(parts)
    pieces = [blob[i : i + 9999] for i in range(0, len(blob), 9999)]
    assert b"".join(decrypt_stream(lookup, CTX, pieces)) == data


def test_iterable_source_with_empty_pieces() -> None:
    data = [b"", b"abc", b"", os.urandom(5000), b"d"]
    blob = b"".join(encrypt_stream(KEY, CTX, data, chunk_size=CHUNK))
    assert dec(blob) == b"".join(data)


def test_empty_input() -> None:
    blob = enc(b"")
    assert len(blob) == BLOB_HEADER_BYTES + 16
    assert dec(blob) == b""
    with pytest.raises(DecryptionError):
        dec(blob, EncryptionContext("control", "blobs", "asset-1", "content"))


def test_reorder_drop_duplicate_fail() -> None:
    header, chunks = split(enc(os.urandom(4 * CHUNK + 100)))
    assert len(chunks) == 5
    variants = {
        "swap": [chunks[1], chunks[0], *chunks[2:]],
        "drop middle": [chunks[0], *chunks[2:]],
        "duplicate": [chunks[0], chunks[0], *chunks[1:]],
        "drop final": chunks[:-1],
        "final moved": [chunks[0], chunks[4], chunks[2], chunks[3]],
        "extend": [*chunks, chunks[-1]],
    }
    for name, parts in variants.items():
        with pytest.raises(DecryptionError):
            dec(header + b"".join(parts))
        assert name


def test_truncation_fails_everywhere() -> None:
    blob = enc(os.urandom(2 * CHUNK + 50))
    for cut in [0, 1, BLOB_HEADER_BYTES - 1, BLOB_HEADER_BYTES, BLOB_HEADER_BYTES + 15]:
        with pytest.raises(DecryptionError, match="truncated"):
            dec(blob[:cut])
    for cut in range(BLOB_HEADER_BYTES + 16, len(blob), 97):
        with pytest.raises(DecryptionError):
            dec(blob[:cut])
    with pytest.raises(DecryptionError):
        dec(blob[:-1])
    # a file truncated exactly at a chunk boundary: the last full chunk is not flagged final
    with pytest.raises(DecryptionError):
        dec(blob[: BLOB_HEADER_BYTES + 2 * SEALED])


def test_splice_between_files_fails() -> None:
    data = os.urandom(3 * CHUNK + 10)
    h1, c1 = split(enc(data))
    h2, c2 = split(enc(data))
    with pytest.raises(DecryptionError):
        dec(h1 + c1[0] + c2[1] + b"".join(c1[2:]))
    with pytest.raises(DecryptionError):
        dec(h2 + b"".join(c1))


def test_wrong_context_and_header_tampering() -> None:
    blob = enc(os.urandom(3000))
    with pytest.raises(DecryptionError):
        dec(blob, EncryptionContext(CTX.scope, "blobs", "asset-2", "content"))
    for i in range(4, BLOB_HEADER_BYTES):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(CryptoError):
            dec(bytes(tampered))
    with pytest.raises(DecryptionError, match="bad magic"):
        dec(b"XXXX" + blob[4:])
    with pytest.raises(DecryptionError, match="unsupported blob format version"):
        dec(blob[:4] + b"\x07" + blob[5:])


def test_every_bit_of_small_blob() -> None:
    blob = enc(b"hello world", chunk_size=4)
    for bit in range(len(blob) * 8):
        tampered = bytearray(blob)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CryptoError):
            dec(bytes(tampered))


def test_bounded_memory_50_mib() -> None:
    total = 50 * 1024 * 1024
    piece = bytes(256 * 1024)

    def zeros() -> Iterator[bytes]:
        for _ in range(total // len(piece)):
            yield piece

    src_hash = hashlib.sha256()
    for _ in range(total // len(piece)):
        src_hash.update(piece)
    largest = 0

    def watch(parts: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal largest
        for p in parts:
            largest = max(largest, len(p))
            yield p

    out_hash = hashlib.sha256()
    n = 0
    for chunk in decrypt_stream(lookup, CTX, watch(encrypt_stream(KEY, CTX, zeros()))):
        out_hash.update(chunk)
        n += len(chunk)
    assert n == total
    assert out_hash.digest() == src_hash.digest()
    assert largest <= 64 * 1024 + 16


def test_chunk_size_validation() -> None:
    with pytest.raises(CryptoError):
        encrypt_stream(KEY, CTX, [b"x"], chunk_size=0)
    with pytest.raises(CryptoError):
        encrypt_stream(KEY, CTX, [b"x"], chunk_size=64 * 1024 * 1024)


def test_file_counts_one_key_use() -> None:
    key = DataKey.generate(1)
    b"".join(encrypt_stream(key, CTX, [os.urandom(10 * CHUNK)], chunk_size=CHUNK))
    assert key.encryptions == 1


def test_encrypt_file(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    out = tmp_path / "out.lvb"
    encrypt_file(KEY, CTX, src, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    blob = out.read_bytes()
    assert data[:64] not in blob
    with out.open("rb") as fh:
        assert b"".join(decrypt_stream(lookup, CTX, fh)) == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.bin", "out.lvb"]


def test_encrypt_file_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        encrypt_file(KEY, CTX, tmp_path / "missing", tmp_path / "out.lvb")
    assert list(tmp_path.iterdir()) == []
