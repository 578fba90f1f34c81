from __future__ import annotations

import hashlib
import re
import secrets

import pytest

from labelvault.auth.tokens import (
    csrf_token_for,
    hash_session_secret,
    new_api_token,
    new_session_secret,
    parse_api_token,
    verify_csrf,
)

TOKEN_RE = re.compile(r"^lv_[0-9A-Za-z]{36}$")
KEY = secrets.token_bytes(32)


def test_api_token_format_and_hash() -> None:
    token = new_api_token()
    assert TOKEN_RE.match(token.plaintext)
    assert token.prefix == token.plaintext[3:11]
    assert token.token_hash == hashlib.sha256(token.plaintext.encode()).hexdigest()
    assert parse_api_token(token.plaintext) == token.token_hash
    assert token.plaintext not in repr(token)


def test_api_tokens_unique() -> None:
    tokens = {new_api_token().plaintext for _ in range(500)}
    assert len(tokens) == 500


def test_checksum_rejects_typos() -> None:
    plaintext = new_api_token().plaintext
    for position in range(3, len(plaintext)):
        original = plaintext[position]
        replacement = "a" if original != "a" else "b"
        typo = plaintext[:position] + replacement + plaintext[position + 1 :]
        assert parse_api_token(typo) is None
    swapped = plaintext[:5] + plaintext[6] + plaintext[5] + plaintext[7:]
    if swapped != plaintext:
        assert parse_api_token(swapped) is None


@pytest.mark.parametrize(
    "value", ["", "lv_", "gh_" + "a" * 36, "lv_" + "a" * 35, "lv_" + "-" * 36, " lv_" + "a" * 35]
)
def test_malformed_tokens_rejected(value: str) -> None:
    assert parse_api_token(value) is None


def test_session_secret() -> None:
    session = new_session_secret()
    assert len(session.secret) >= 43  # 256 bits in base64url
    assert session.secret_hash == hash_session_secret(session.secret)
    assert session.secret not in repr(session)
    assert new_session_secret().secret != session.secret


def test_csrf_bound_to_session() -> None:
    mine = new_session_secret().secret_hash
    other = new_session_secret().secret_hash
    token = csrf_token_for(KEY, mine)
    assert verify_csrf(KEY, mine, token)
    assert csrf_token_for(KEY, mine) != token  # masked per call, all valid
    assert verify_csrf(KEY, mine, csrf_token_for(KEY, mine))
    assert not verify_csrf(KEY, other, token)
    assert not verify_csrf(secrets.token_bytes(32), mine, token)
    for bad in ["", ".", "abc", token + "x", token.replace(".", ""), "a.b.c", "é.é"]:
        assert not verify_csrf(KEY, mine, bad)


def test_csrf_key_too_short() -> None:
    with pytest.raises(ValueError):
        csrf_token_for(b"short", "x")
