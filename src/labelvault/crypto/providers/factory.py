"""Build a key provider by kind. Adding a provider is one line in ``_PROVIDERS``.

Provider modules are imported lazily, so boto3 and hvac load only when their provider is used.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from labelvault.crypto.errors import KeyProviderError
from labelvault.crypto.providers.base import KeyProvider

__all__ = ["PROVIDER_KINDS", "make_key_provider"]

_PROVIDERS: dict[str, tuple[str, str]] = {
    "local": ("labelvault.crypto.providers.local", "LocalKeyProvider"),
    "aws-kms": ("labelvault.crypto.providers.aws_kms", "AwsKmsKeyProvider"),
    "vault-transit": ("labelvault.crypto.providers.vault_transit", "VaultTransitKeyProvider"),
}
PROVIDER_KINDS = frozenset(_PROVIDERS)


def make_key_provider(kind: str, **settings: Any) -> KeyProvider:
    """``make_key_provider("local", directory=...)``, ``("aws-kms", key_id=..., endpoint_url=...)``,
    ``("vault-transit", url=..., token=..., key_name=...)``; see each class's ``from_settings``."""
    try:
        module_name, class_name = _PROVIDERS[kind]
    except KeyError:
        known = ", ".join(sorted(_PROVIDERS))
        raise KeyProviderError(f"unknown key provider {kind!r} (known: {known})") from None
    cls = getattr(importlib.import_module(module_name), class_name)
    return cast(KeyProvider, cls.from_settings(**settings))
