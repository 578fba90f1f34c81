from __future__ import annotations

import time

import pytest
from argon2 import PasswordHasher, Type

from labelvault.auth import passwords
from labelvault.auth.passwords import (
    check_password_policy,
    common_passwords,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from labelvault.kernel.errors import InvalidInputError


def _policy_error(password: str, **kwargs: object) -> str:
    with pytest.raises(InvalidInputError) as info:
        check_password_policy(password, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == "password"
    return info.value.message


def test_too_short() -> None:
    assert "at least 12" in _policy_error("a7#kQ9!zP2x")  # 11 characters


def test_too_long() -> None:
    assert "at most 128" in _policy_error("v" + "x7Kq" * 32)  # 129 characters


def test_exactly_128_accepted() -> None:
    check_password_policy("x7Kq" * 32)


def test_length_counts_code_points_after_nfkc() -> None:
    # Eleven composed characters typed in decomposed form: still too short.
    decomposed = "e\u0301" * 11
    assert len(decomposed) == 22
    assert "at least 12" in _policy_error(decomposed)


def test_common_password_rejected_case_insensitively() -> None:
    assert "1qaz2wsx3edc" in common_passwords()
    assert "too common" in _policy_error("1QAZ2WSX3EDC")
    assert "too common" in _policy_error("qazwsxedcrfv")


def test_list_is_large_and_has_no_header() -> None:
    entries = common_passwords()
    assert len(entries) >= 10_000
    assert not any(e.startswith("#") for e in entries)


def test_contains_email_local_part_or_name() -> None:
    inputs = ("margaret.hamilton@example.com", "Margaret Hamilton")
    assert "name or email" in _policy_error("my margaret.hamilton pass", user_inputs=inputs)
    assert "name or email" in _policy_error("Hamilton-rocket-1969", user_inputs=inputs)
    assert "name or email" in _policy_error("MargaretHamilton", user_inputs=inputs)
    check_password_policy("apollo guidance computer", user_inputs=inputs)


def test_long_passphrase_and_unicode_accepted() -> None:
    passphrase = "correct horse battery staple " * 3
    passphrase = passphrase[:64]
    assert len(passphrase) == 64
    check_password_policy(passphrase)
    check_password_policy("żółta łódź płynie po jeziorze")
    check_password_policy("パスワードは長い方が安全です")


def test_hash_verify_roundtrip() -> None:
    encoded = hash_password("żółta łódź płynie")
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(encoded, "żółta łódź płynie")
    # Decomposed input normalises to the same password (NFKC).
    assert verify_password(encoded, "z\u0307o\u0301łta łódź płynie")
    assert not verify_password(encoded, "żółta łódź płynie!")
    assert not verify_password("not a hash", "whatever")
    assert not verify_password(encoded, "x" * 10_000)
    assert not needs_rehash(encoded)


def test_weaker_hash_needs_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    old = weak.hash("legacy password here")
    assert verify_password(old, "legacy password here")
    assert needs_rehash(old)
    assert needs_rehash("garbage")


def test_dummy_verify_takes_about_as_long_as_a_real_one() -> None:
    encoded = hash_password("some long password")
    dummy_verify("warm up")

    def timed(fn: object) -> float:
        start = time.perf_counter()
        for _ in range(3):
            fn()  # type: ignore[operator]
        return time.perf_counter() - start

    real = timed(lambda: verify_password(encoded, "wrong password"))
    dummy = timed(lambda: dummy_verify("wrong password"))
    assert dummy > real / 3
    assert passwords.ARGON2_MEMORY_COST_KIB >= 19_456


def test_min_length_for_accounts_without_mfa() -> None:
    check_password_policy("apollo guidance")  # 15
    assert "at least 15" in _policy_error("apollo guidanc", min_length=15)
    with pytest.raises(ValueError):
        check_password_policy("apollo guidance", min_length=4)
