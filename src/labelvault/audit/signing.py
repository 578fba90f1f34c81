"""The deployment's Ed25519 checkpoint signing key.

Generated once: a random 32-byte seed, wrapped by the key provider (context
``{"scope": "control", "purpose": "audit-signing"}``) and stored in ``lv_control.signing_keys``
under the signed-note key name ``labelvault-<region>``. Only the public key is useful to anyone
else: :func:`public_verifier_key` gives the C2SP verifier-key string to hand to auditors.

``LABELVAULT_AUDIT_SIGNING_KEY`` (base64 of a 32-byte seed, or ``..._FILE``) overrides the
stored key, for deployments that keep the signing key outside the database entirely. Its public
half is still recorded in ``lv_control.signing_keys`` (with an empty ``wrapped_seed``) under
``labelvault-<region>-ext-<8 hex>``, so that the default verifier finds it; auditors should
nevertheless pass ``--public-key`` so the database is not trusted for the key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
from typing import Any, Final

from psycopg import AsyncConnection

from labelvault.audit.checkpoint import ALG_ED25519, Signer, key_id
from labelvault.kernel.errors import InvalidInputError, LabelVaultError

SIGNING_CONTEXT: Final = {"scope": "control", "purpose": "audit-signing"}
EXTERNAL_MARK: Final = b""  # wrapped_seed of a key whose seed is not stored


class SigningKeyError(LabelVaultError):
    code = "audit_signing_key"


def key_name_for(region: str) -> str:
    return f"labelvault-{region}"


def verifier_key_string(name: str, public_key: bytes) -> str:
    """``<name>+<hex key ID>+<base64(0x01 || public key)>`` (C2SP signed-note verifier key)."""
    b64 = base64.b64encode(ALG_ED25519 + public_key).decode("ascii")
    return f"{name}+{key_id(name, public_key).hex()}+{b64}"


def _seed_from_setting(text: str) -> bytes:
    try:
        seed = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        seed = b""
    if len(seed) != 32:
        raise InvalidInputError(
            "the audit signing key must be the base64 of a 32-byte Ed25519 seed",
            field="audit_signing_key",
        )
    return seed


async def _select(conn: AsyncConnection[Any], name: str) -> tuple[bytes, bytes] | None:
    cur = await conn.execute(
        "SELECT public_key, wrapped_seed FROM lv_control.signing_keys WHERE name = %s", [name]
    )
    row = await cur.fetchone()
    return (bytes(row[0]), bytes(row[1])) if row else None


async def load_signer(platform: Any) -> Signer:
    """Get (or create, once) the deployment's checkpoint :class:`Signer`."""
    from labelvault.crypto import WrappedKey
    from labelvault.db.context import ControlContext

    settings = platform.settings
    provider = platform.keys.provider
    name = key_name_for(settings.region)
    if settings.audit_signing_key is not None:
        seed = _seed_from_setting(settings.audit_signing_key.get_secret_value())
        signer = Signer.from_seed(name, seed)
        name = f"{name}-ext-{hashlib.sha256(signer.public_key_bytes).hexdigest()[:8]}"
        signer = Signer.from_seed(name, seed)
        async with platform.db.control_tx(ControlContext.system_context()) as conn:
            await conn.execute(
                "INSERT INTO lv_control.signing_keys (name, public_key, wrapped_seed) "
                "VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
                [name, signer.public_key_bytes, EXTERNAL_MARK],
            )
        return signer
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        row = await _select(conn, name)
        if row is None:
            seed = secrets.token_bytes(32)
            fresh = Signer.from_seed(name, seed)
            wrapped = await asyncio.to_thread(provider.wrap, seed, SIGNING_CONTEXT)
            await conn.execute(
                "INSERT INTO lv_control.signing_keys (name, public_key, wrapped_seed) "
                "VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
                [name, fresh.public_key_bytes, wrapped.to_bytes()],
            )
            row = await _select(conn, name)
            assert row is not None
    public_key, wrapped_seed = row
    if wrapped_seed == EXTERNAL_MARK:
        raise SigningKeyError(f"signing key {name} is external: set LABELVAULT_AUDIT_SIGNING_KEY")
    seed = await asyncio.to_thread(
        provider.unwrap, WrappedKey.from_bytes(wrapped_seed), SIGNING_CONTEXT
    )
    signer = Signer.from_seed(name, bytes(seed))
    if signer.public_key_bytes != public_key:
        raise SigningKeyError(f"signing key {name}: stored public key does not match its seed")
    return signer


async def public_verifier_key(platform: Any) -> str:
    """The C2SP verifier key of the current signing key (creating the key if needed)."""
    return (await load_signer(platform)).verifier_key()


async def stored_verifier_keys(conn: AsyncConnection[Any]) -> list[str]:
    """Verifier keys of every signing key recorded in the database (needs system context)."""
    cur = await conn.execute("SELECT name, public_key FROM lv_control.signing_keys ORDER BY name")
    return [verifier_key_string(name, bytes(pk)) for name, pk in await cur.fetchall()]
