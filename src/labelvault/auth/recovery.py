"""MFA recovery codes: 80-bit, single use, stored as argon2id hashes (ASVS 6.5.2)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from argon2.exceptions import InvalidHashError, VerificationError

from labelvault.auth.passwords import HASHER

# Crockford base32 (no i, l, o, u); 16 symbols x 5 bits = 80 bits per code.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_GROUPS = 4
RECOVERY_GROUP_LEN = 4
RECOVERY_CODE_COUNT = 10
_CODE_LEN = RECOVERY_GROUPS * RECOVERY_GROUP_LEN
_CONFUSABLES = str.maketrans({"o": "0", "i": "1", "l": "1"})


def generate_recovery_codes(n: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``n`` fresh codes like ``7k2m-q9xd-3hfa-0pzv``; show once, store only the hashes."""
    if not 1 <= n <= 100:
        raise ValueError("n must be between 1 and 100")
    codes: list[str] = []
    for _ in range(n):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(_CODE_LEN))
        groups = [raw[i : i + RECOVERY_GROUP_LEN] for i in range(0, _CODE_LEN, RECOVERY_GROUP_LEN)]
        codes.append("-".join(groups))
    return codes


def normalize_recovery_code(code: str) -> str | None:
    """Canonical form (lower case, no dashes or spaces, o->0, i/l->1), or ``None`` if malformed."""
    value = "".join(code.split()).replace("-", "").lower().translate(_CONFUSABLES)
    if len(value) != _CODE_LEN or any(ch not in RECOVERY_ALPHABET for ch in value):
        return None
    return value


def hash_recovery_code(code: str) -> str:
    """argon2id hash of the normalised code."""
    value = normalize_recovery_code(code)
    if value is None:
        raise ValueError("malformed recovery code")
    return HASHER.hash(value)


def match_recovery_code(code: str, hashes: Sequence[str | None]) -> int | None:
    """Index of the hash matching ``code`` among the unused ones, else ``None``.

    Pass the user's remaining hashes (``None`` marks a used slot); the caller must then mark
    the returned index used in the same transaction.
    """
    value = normalize_recovery_code(code)
    if value is None:
        return None
    for index, stored in enumerate(hashes):
        if stored is None:
            continue
        try:
            if HASHER.verify(stored, value):
                return index
        except (VerificationError, InvalidHashError):
            continue
    return None
