from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelvault.crypto import (
    MAX_ENCRYPTIONS,
    ROTATE_AFTER_ENCRYPTIONS,
    CryptoError,
    DataKey,
    DecryptionError,
    EncryptionContext,
    decrypt_value,
    encrypt_value,
    peek_key_version,
)
from labelvault.crypto.envelope import HEADER_BYTES, NONCE_BYTES
from labelvault.kernel.errors import LabelVaultError

PROJECT = str(uuid.UUID(int=1))
OTHER_PROJECT = str(uuid.UUID(int=2))
CTX = EncryptionContext(PROJECT, "items", "row-1", "content")
KEY = DataKey(7, bytes(range(32)))
BLOB = encrypt_value(KEY, b"the quick brown fox", CTX)


def lookup(version: int) -> DataKey:
    assert version == KEY.version
    return KEY


def test_round_trip() -> None:
    key = DataKey.generate(3)
    for plaintext in (b"", b"x", os.urandom(10_000)):
        blob = encrypt_value(key, plaintext, CTX)
        assert len(plaintext) < 16 or plaintext[:16] not in blob
        assert decrypt_value(lambda v: key, blob, CTX) == plaintext
    assert peek_key_version(blob) == 3


def test_format_layout() -> None:
    assert BLOB[0] == 1
    assert int.from_bytes(BLOB[1:5], "big") == 7
    assert len(BLOB) == HEADER_BYTES + NONCE_BYTES + len(b"the quick brown fox") + 16


@pytest.mark.parametrize(
    "other",
    [
        EncryptionContext(OTHER_PROJECT, "items", "row-1", "content"),
        EncryptionContext("control", "items", "row-1", "content"),
        EncryptionContext(PROJECT, "comments", "row-1", "content"),
        EncryptionContext(PROJECT, "items", "row-2", "content"),
        EncryptionContext(PROJECT, "items", "row-1", "title"),
        EncryptionContext(PROJECT, "items", "row-1", "content", version=2),
    ],
)
def test_moved_ciphertext_fails(other: EncryptionContext) -> None:
    with pytest.raises(DecryptionError, match="failed authentication"):
        decrypt_value(lookup, BLOB, other)


def test_wrong_key_fails() -> None:
    with pytest.raises(DecryptionError):
        decrypt_value(lambda v: DataKey(v, os.urandom(32)), BLOB, CTX)


@settings(max_examples=300, deadline=None)
@given(bit=st.integers(min_value=0, max_value=len(BLOB) * 8 - 1))
def test_any_bit_flip_fails(bit: int) -> None:
    tampered = bytearray(BLOB)
    tampered[bit // 8] ^= 1 << (bit % 8)
    # a flipped key-version bit looks up another (here: all-zero) key, which fails to
    # authenticate like any other change
    with pytest.raises(DecryptionError):
        decrypt_value(
            lambda v: KEY if v == KEY.version else DataKey(v, bytes(32)), bytes(tampered), CTX
        )


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(BLOB) - 1))
def test_truncated_fails(cut: int) -> None:
    with pytest.raises(DecryptionError):
        decrypt_value(lookup, BLOB[:cut], CTX)


def test_extended_fails() -> None:
    with pytest.raises(DecryptionError):
        decrypt_value(lookup, BLOB + b"\x00", CTX)


def test_unknown_format_version() -> None:
    with pytest.raises(DecryptionError, match="unsupported ciphertext format version 9"):
        decrypt_value(lookup, b"\x09" + BLOB[1:], CTX)
    with pytest.raises(DecryptionError, match="format version"):
        peek_key_version(b"\x02" + BLOB[1:])


def test_error_hierarchy_and_messages_hide_secrets() -> None:
    assert issubclass(DecryptionError, CryptoError)
    assert issubclass(CryptoError, LabelVaultError)
    with pytest.raises(DecryptionError) as info:
        decrypt_value(lookup, BLOB, EncryptionContext(PROJECT, "items", "row-9", "content"))
    text = str(info.value) + repr(info.value)
    assert "quick" not in text and bytes(range(32)).hex() not in text


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=2, max_value=400))
def test_nonces_unique(n: int) -> None:
    key = DataKey.generate(1)
    nonces = {
        encrypt_value(key, b"same", CTX)[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        for _ in range(n)
    }
    assert len(nonces) == n
    assert key.encryptions == n


def test_usage_counter_is_thread_safe() -> None:
    key = DataKey.generate(1)

    def work() -> None:
        for _ in range(200):
            encrypt_value(key, b"v", CTX)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert key.encryptions == 1600


def test_rotation_threshold_and_hard_limit() -> None:
    key = DataKey.generate(1)
    assert not key.needs_rotation
    key.restore_usage(ROTATE_AFTER_ENCRYPTIONS - 1)
    assert not key.needs_rotation
    encrypt_value(key, b"v", CTX)
    assert key.needs_rotation
    key.restore_usage(MAX_ENCRYPTIONS - 1)
    encrypt_value(key, b"v", CTX)  # the last permitted encryption
    with pytest.raises(CryptoError, match="encryption limit"):
        encrypt_value(key, b"v", CTX)
    assert key.encryptions == MAX_ENCRYPTIONS
    assert MAX_ENCRYPTIONS < 2**32


def test_data_key_hides_material() -> None:
    key = DataKey(5, b"\xab" * 32)
    for text in (repr(key), str(key), f"{key}"):
        assert "abab" not in text.lower() and "\\xab" not in text
        assert "version=5" in text
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_wiped_key_refuses_use() -> None:
    key = DataKey.generate(1)
    blob = encrypt_value(key, b"v", CTX)
    key.wipe()
    assert key._material == bytearray(32)
    with pytest.raises(CryptoError, match="wiped"):
        encrypt_value(key, b"v", CTX)
    with pytest.raises(CryptoError, match="wiped"):
        decrypt_value(lambda v: key, blob, CTX)


def test_bad_keys_rejected() -> None:
    with pytest.raises(CryptoError):
        DataKey(1, b"short")
    with pytest.raises(CryptoError):
        DataKey(-1, bytes(32))
    with pytest.raises(CryptoError):
        DataKey(2**32, bytes(32))


def test_lookup_returning_wrong_version_is_refused() -> None:
    with pytest.raises(CryptoError, match="another version"):
        decrypt_value(lambda v: DataKey(v + 1, bytes(range(32))), BLOB, CTX)


def test_context_encoding_is_unambiguous() -> None:
    a = EncryptionContext("p", "a", "bc", "c").encode()
    b = EncryptionContext("p", "ab", "c", "c").encode()
    assert a != b
    assert EncryptionContext.for_row(None, "t", 5, "c").scope == "control"
    assert EncryptionContext.for_row(uuid.UUID(int=1), "t", 5, "c") == EncryptionContext(
        PROJECT, "t", "5", "c"
    )


@pytest.mark.parametrize(
    "fields", [("", "t", "r", "c"), ("p", "", "r", "c"), ("p", "t", "", "c"), ("p", "t", "r", "")]
)
def test_context_rejects_empty_fields(fields: tuple[str, str, str, str]) -> None:
    with pytest.raises(CryptoError):
        EncryptionContext(*fields)


@settings(max_examples=200)
@given(
    a=st.tuples(st.text(min_size=1), st.text(min_size=1)),
    b=st.tuples(st.text(min_size=1), st.text(min_size=1)),
)
def test_context_encoding_injective(a: tuple[str, str], b: tuple[str, str]) -> None:
    ea = EncryptionContext("p", a[0], a[1], "c").encode()
    eb = EncryptionContext("p", b[0], b[1], "c").encode()
    assert (ea == eb) == (a == b)


def test_backend_libraries_load_only_on_demand() -> None:
    code = (
        "import sys, labelvault.crypto as c; "
        "assert 'boto3' not in sys.modules and 'hvac' not in sys.modules, 'eager import'; "
        "c.make_key_provider('local', operator_key=b'k' * 32); "
        "assert 'boto3' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
