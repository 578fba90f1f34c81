"""Opaque API tokens, session secrets and session-bound CSRF tokens.

API tokens look like ``lv_<30 base62 random><6 base62 CRC32>`` (~178 random bits): the
``lv_`` prefix lets secret scanners find them and the checksum lets anyone reject typos
without a database lookup. Only ``SHA-256(token)`` is stored (ASVS 6.5.2: a plain hash is
fine for >= 112-bit random secrets).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass, field

API_TOKEN_PREFIX = "lv_"  # noqa: S105 - a public marker, not a secret
BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
API_TOKEN_RANDOM_LEN = 30  # 30 * log2(62) = 178.6 bits
API_TOKEN_CHECKSUM_LEN = 6  # 62**6 > 2**32
API_TOKEN_DISPLAY_LEN = 8
API_TOKEN_LEN = len(API_TOKEN_PREFIX) + API_TOKEN_RANDOM_LEN + API_TOKEN_CHECKSUM_LEN

SESSION_SECRET_BYTES = 32  # 256 bits
CSRF_NONCE_BYTES = 16
CSRF_MIN_KEY_BYTES = 32
_CSRF_CONTEXT = b"labelvault/csrf/v1\x00"
_BASE62_SET = frozenset(BASE62_ALPHABET)


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly minted API token. Show ``plaintext`` once; store ``token_hash`` and ``prefix``."""

    plaintext: str = field(repr=False)
    token_hash: str
    prefix: str


@dataclass(frozen=True, slots=True)
class NewSessionSecret:
    """A fresh session id: ``secret`` goes in the cookie, ``secret_hash`` in the session store."""

    secret: str = field(repr=False)
    secret_hash: str


def _base62(number: int, width: int) -> str:
    digits: list[str] = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        digits.append(BASE62_ALPHABET[rem])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), API_TOKEN_CHECKSUM_LEN)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_api_token() -> NewToken:
    """Mint a token; ``prefix`` is its first 8 random characters (show ``lv_<prefix>...``)."""
    random_part = "".join(secrets.choice(BASE62_ALPHABET) for _ in range(API_TOKEN_RANDOM_LEN))
    body = API_TOKEN_PREFIX + random_part
    token = body + _checksum(body)
    return NewToken(
        plaintext=token,
        token_hash=sha256_hex(token),
        prefix=random_part[:API_TOKEN_DISPLAY_LEN],
    )


def parse_api_token(value: str) -> str | None:
    """Return the token's SHA-256 hex (the lookup key) if format and checksum are valid."""
    if not isinstance(value, str) or len(value) != API_TOKEN_LEN:
        return None
    if not value.startswith(API_TOKEN_PREFIX):
        return None
    rest = value[len(API_TOKEN_PREFIX) :]
    if not _BASE62_SET.issuperset(rest):
        return None
    body, checksum = value[:-API_TOKEN_CHECKSUM_LEN], value[-API_TOKEN_CHECKSUM_LEN:]
    if not hmac.compare_digest(_checksum(body), checksum):
        return None
    return sha256_hex(value)


def new_session_secret() -> NewSessionSecret:
    """A 256-bit URL-safe session id and its SHA-256 hex (ASVS 7.2.3)."""
    secret = secrets.token_urlsafe(SESSION_SECRET_BYTES)
    return NewSessionSecret(secret=secret, secret_hash=sha256_hex(secret))


def hash_session_secret(secret: str) -> str:
    """SHA-256 hex of a presented session id, to look the session up."""
    return sha256_hex(secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _csrf_mac(key: bytes, session_secret_hash: str, nonce: bytes) -> bytes:
    message = _CSRF_CONTEXT + session_secret_hash.encode("utf-8") + b"\x00" + nonce
    return hmac.new(key, message, hashlib.sha256).digest()


def _check_key(key: bytes) -> None:
    if len(key) < CSRF_MIN_KEY_BYTES:
        raise ValueError(f"CSRF key must be at least {CSRF_MIN_KEY_BYTES} bytes")


def csrf_token_for(key: bytes, session_secret_hash: str) -> str:
    """A masked CSRF token bound to one session (HMAC of the session hash with a random nonce).

    ``key`` is a server-side secret of >= 32 bytes. Each call returns a different token
    (BREACH-resistant); all verify for the same session.
    """
    _check_key(key)
    nonce = secrets.token_bytes(CSRF_NONCE_BYTES)
    return f"{_b64(nonce)}.{_b64(_csrf_mac(key, session_secret_hash, nonce))}"


def verify_csrf(key: bytes, session_secret_hash: str, token: str) -> bool:
    """Whether ``token`` was issued by :func:`csrf_token_for` for this session."""
    _check_key(key)
    if not isinstance(token, str) or len(token) > 128 or token.count(".") != 1:
        return False
    nonce_b64, mac_b64 = token.split(".")
    try:
        nonce = _unb64(nonce_b64)
        mac = _unb64(mac_b64)
    except (binascii.Error, ValueError):
        return False
    if len(nonce) != CSRF_NONCE_BYTES:
        return False
    return hmac.compare_digest(mac, _csrf_mac(key, session_secret_hash, nonce))
