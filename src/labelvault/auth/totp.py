"""RFC 6238 TOTP (SHA-1, 6 digits, 30 s steps, +/-1 step) with a replay guard (ASVS 6.5.1).

The caller stores the step returned by :func:`verify_totp` and passes it back as
``last_used_step`` next time; any code whose step is not newer is rejected. Store TOTP
secrets encrypted at rest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import pyotp

TOTP_DIGITS = 6
TOTP_INTERVAL_SECONDS = 30
TOTP_VALID_WINDOW = 1
TOTP_SECRET_BYTES = 20  # 160 bits, the RFC 4226 recommendation
DEFAULT_ISSUER = "LabelVault"


def new_totp_secret() -> str:
    """A fresh 160-bit secret, base32 (32 characters, no padding)."""
    return base64.b32encode(secrets.token_bytes(TOTP_SECRET_BYTES)).decode("ascii")


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(
        secret, digits=TOTP_DIGITS, digest=hashlib.sha1, interval=TOTP_INTERVAL_SECONDS
    )


def provisioning_uri(secret: str, account: str, issuer: str = DEFAULT_ISSUER) -> str:
    """The ``otpauth://totp/...`` URI to show as a QR code during enrolment."""
    return str(_totp(secret).provisioning_uri(name=account, issuer_name=issuer))


def time_step(now: float | None = None) -> int:
    """The RFC 6238 time step containing ``now`` (Unix seconds)."""
    return int((time.time() if now is None else now) // TOTP_INTERVAL_SECONDS)


def totp_code_at(secret: str, step: int) -> str:
    """The code for a given time step (useful for enrolment checks and tests)."""
    return str(_totp(secret).generate_otp(step))


def verify_totp(
    secret: str, code: str, *, last_used_step: int | None, now: float | None = None
) -> int | None:
    """Return the matched time step if ``code`` is valid and newer than ``last_used_step``.

    Accepts the current step and one step either side. Spaces in ``code`` are ignored;
    anything that is not exactly six ASCII digits returns ``None`` without raising.
    """
    if not isinstance(code, str):
        return None
    candidate = code.replace(" ", "").strip()
    if len(candidate) != TOTP_DIGITS or not (candidate.isascii() and candidate.isdigit()):
        return None
    current = time_step(now)
    totp = _totp(secret)
    matched: int | None = None
    # Compare against every window step so timing does not reveal which one matched.
    for step in range(current - TOTP_VALID_WINDOW, current + TOTP_VALID_WINDOW + 1):
        expected = str(totp.generate_otp(step))
        ok = hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii"))
        fresh = last_used_step is None or step > last_used_step
        if ok and fresh and matched is None:
            matched = step
    return matched
