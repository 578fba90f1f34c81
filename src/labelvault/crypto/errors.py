"""Errors raised by :mod:`labelvault.crypto`.

Messages never contain key bytes, plaintext or ciphertext: they are shown to callers and logged.
"""

from __future__ import annotations

from labelvault.kernel.errors import LabelVaultError

__all__ = ["CryptoError", "DataDestroyedError", "DecryptionError", "KeyProviderError"]


class CryptoError(LabelVaultError):
    """Base of every cryptographic failure (fail closed: nothing is returned)."""

    status = 500
    code = "crypto_error"


class DecryptionError(CryptoError):
    """A ciphertext or wrapped key did not authenticate."""

    code = "decryption_failed"

    def __init__(
        self,
        message: str = "ciphertext failed authentication (wrong key, wrong context or tampered)",
        *,
        field: str | None = None,
    ) -> None:
        super().__init__(message, field=field)


class DataDestroyedError(CryptoError):
    """The data key needed to read this value was crypto-shredded."""

    status = 410
    code = "data_destroyed"

    def __init__(
        self,
        message: str = "data destroyed: the project's keys were shredded",
        *,
        field: str | None = None,
    ) -> None:
        super().__init__(message, field=field)


class KeyProviderError(CryptoError):
    """The key provider (local keyring, AWS KMS, Vault) refused or failed an operation."""

    status = 503
    code = "key_provider_error"
