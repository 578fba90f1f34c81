"""Key providers: wrap data keys under a KEK held by a local keyring, AWS KMS or Vault Transit.

Each scope (project id or "control") is wrapped under key material of its own inside the
provider; ``KeyProvider.destroy_scope(scope)`` crypto-shreds a project, database backups
included.

Only :mod:`.base` and :mod:`.factory` are imported here; concrete providers load on demand.
"""

from labelvault.crypto.providers.base import GeneratesDataKeys, KeyProvider, WrappedKey
from labelvault.crypto.providers.factory import PROVIDER_KINDS, make_key_provider

__all__ = ["PROVIDER_KINDS", "GeneratesDataKeys", "KeyProvider", "WrappedKey", "make_key_provider"]
