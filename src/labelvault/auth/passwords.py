"""Password hashing (argon2id) and the password policy (ASVS 6.2, NIST SP 800-63B).

Passwords are NFKC-normalised before hashing, verification and policy checks, so the same
password typed with composed or decomposed Unicode characters verifies. Nothing is truncated.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Iterable
from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from labelvault.kernel.errors import InvalidInputError

# Argon2id parameters: OWASP Password Storage Cheat Sheet minimum (m=19 MiB, t=2, p=1).
ARGON2_TIME_COST = 2
ARGON2_MEMORY_COST_KIB = 19_456
ARGON2_PARALLELISM = 1
ARGON2_HASH_LEN = 32
ARGON2_SALT_LEN = 16

PASSWORD_MIN_LENGTH = 12
PASSWORD_MIN_LENGTH_WITHOUT_MFA = 15  # NIST SP 800-63B-4 for password-only authentication
PASSWORD_ABSOLUTE_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# Inputs longer than this can never satisfy the policy; refuse them before hashing (DoS guard).
MAX_VERIFY_BYTES = 4 * PASSWORD_MAX_LENGTH * 2
# User-supplied words (name parts, email local part) shorter than this are not checked.
USER_INPUT_MIN_LENGTH = 3

COMMON_PASSWORDS_RESOURCE = "common-passwords.txt"

HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_COST_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=ARGON2_HASH_LEN,
    salt_len=ARGON2_SALT_LEN,
    type=Type.ID,
)


def normalize_password(password: str) -> str:
    """NFKC-normalise a password (NIST SP 800-63B 5.1.1.2)."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    """Return an argon2id PHC string for ``password`` (which should already pass the policy)."""
    return HASHER.hash(normalize_password(password))


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; never raises on mismatch or a bad hash."""
    if len(password.encode("utf-8", "surrogatepass")) > MAX_VERIFY_BYTES:
        return False
    try:
        return HASHER.verify(password_hash, normalize_password(password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the current ones (rehash at login)."""
    try:
        return HASHER.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


@cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(24))


def dummy_verify(password: str) -> None:
    """Spend as long as a real verification; use it for unknown accounts (ASVS 6.3.8)."""
    verify_password(_dummy_hash(), password)


@cache
def common_passwords() -> frozenset[str]:
    """The shipped common/breached password list, case-folded; loaded on first use."""
    text = (
        resources.files("labelvault.auth")
        .joinpath("data", COMMON_PASSWORDS_RESOURCE)
        .read_text(encoding="utf-8")
    )
    return frozenset(
        _fold(line) for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _fold(value: str) -> str:
    return unicodedata.normalize("NFKC", value).casefold().strip()


def _user_words(user_inputs: Iterable[str]) -> set[str]:
    words: set[str] = set()
    for raw in user_inputs:
        value = _fold(raw)
        if not value:
            continue
        if "@" in value:
            local = value.rsplit("@", 1)[0]
            candidates = [local, *local.replace("_", ".").replace("-", ".").split(".")]
            candidates.append(local.split("+", 1)[0])
        else:
            candidates = [value, value.replace(" ", ""), *value.split()]
        words.update(c for c in candidates if len(c) >= USER_INPUT_MIN_LENGTH)
    return words


def check_password_policy(
    password: str,
    *,
    user_inputs: Iterable[str] = (),
    min_length: int = PASSWORD_MIN_LENGTH,
) -> None:
    """Raise ``InvalidInputError(field="password")`` if ``password`` is not acceptable.

    Rules: 12..128 Unicode code points after NFKC normalisation, not in the common/breached
    list (case-insensitive), and not equal to or containing the user's email local part or
    name (pass them in ``user_inputs``). No composition rules. Pass
    ``min_length=PASSWORD_MIN_LENGTH_WITHOUT_MFA`` for accounts without a second factor.
    """
    if not PASSWORD_ABSOLUTE_MIN_LENGTH <= min_length <= PASSWORD_MAX_LENGTH:
        raise ValueError("min_length out of range")
    normalized = normalize_password(password)
    length = len(normalized)
    if length < min_length:
        raise InvalidInputError(
            f"Password must be at least {min_length} characters long.", field="password"
        )
    if length > PASSWORD_MAX_LENGTH:
        raise InvalidInputError(
            f"Password must be at most {PASSWORD_MAX_LENGTH} characters long.", field="password"
        )
    folded = normalized.casefold()
    if folded in common_passwords() or folded.strip() in common_passwords():
        raise InvalidInputError(
            "This password is too common or has appeared in a data breach; choose another.",
            field="password",
        )
    if any(word in folded for word in _user_words(user_inputs)):
        raise InvalidInputError(
            "Password must not contain your name or email address.", field="password"
        )
