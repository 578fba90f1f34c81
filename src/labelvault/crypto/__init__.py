"""Encryption at rest for LabelVault (design invariants 4 and 7).

* :mod:`.context` - the encryption context (project/"control", table, row, column) used as AAD.
* :mod:`.envelope` - data keys and the versioned AES-256-GCM value format.
* :mod:`.blobs` - streaming chunked encryption of large files with bounded memory.
* :mod:`.keys` - per-scope keyrings, the unwrapped-key cache, wrap/unwrap helpers.
* :mod:`.providers` - KEK providers: local keyring, AWS KMS, Vault Transit.
* :mod:`.secrets` - redacting secret wrapper and a safe reader of operator secrets.

``cryptography`` is imported only inside this package; boto3 and hvac only by their providers,
which load on demand through :func:`make_key_provider`.
"""

from labelvault.crypto.blobs import (
    DEFAULT_CHUNK_SIZE,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
    peek_blob_key_version,
)
from labelvault.crypto.context import (
    AAD,
    CONTROL_SCOPE,
    EncryptionContext,
    scope_of,
)
from labelvault.crypto.envelope import (
    MAX_ENCRYPTIONS,
    ROTATE_AFTER_ENCRYPTIONS,
    DataKey,
    KeyLookup,
    decrypt_value,
    encrypt_value,
    peek_key_version,
)
from labelvault.crypto.errors import (
    CryptoError,
    DataDestroyedError,
    DecryptionError,
    KeyProviderError,
)
from labelvault.crypto.keys import (
    KeyCache,
    ProjectKeyring,
    data_key_context,
    generate_wrapped_data_key,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from labelvault.crypto.providers import (
    PROVIDER_KINDS,
    KeyProvider,
    WrappedKey,
    make_key_provider,
)
from labelvault.crypto.secrets import Secret, read_secret

__all__ = [
    "AAD",
    "CONTROL_SCOPE",
    "DEFAULT_CHUNK_SIZE",
    "MAX_ENCRYPTIONS",
    "PROVIDER_KINDS",
    "ROTATE_AFTER_ENCRYPTIONS",
    "CryptoError",
    "DataDestroyedError",
    "DataKey",
    "DecryptionError",
    "EncryptionContext",
    "KeyCache",
    "KeyLookup",
    "KeyProvider",
    "KeyProviderError",
    "ProjectKeyring",
    "Secret",
    "WrappedKey",
    "data_key_context",
    "decrypt_stream",
    "decrypt_value",
    "encrypt_file",
    "encrypt_stream",
    "encrypt_value",
    "generate_wrapped_data_key",
    "make_key_provider",
    "new_data_key",
    "peek_blob_key_version",
    "peek_key_version",
    "read_secret",
    "scope_of",
    "unwrap_data_key",
    "wrap_data_key",
]
