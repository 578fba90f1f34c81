"""Blob storage (images and other media, export bundles): one container per project.

* :mod:`.base` - the :class:`BlobStore` protocol, blob id rules, errors.
* :mod:`.local` - a local blob directory (the embedded default).
* :mod:`.s3` - one S3 bucket per project (no shared buckets).

Stores only ever hold ciphertext: encrypt with :func:`labelvault.crypto.encrypt_stream` before
``put`` and decrypt ``get`` with :func:`labelvault.crypto.decrypt_stream`.
"""

from labelvault.storage.base import (
    BlobNotFoundError,
    BlobStore,
    BlobStoreError,
    check_blob_id,
    discard_blob,
)
from labelvault.storage.factory import BLOB_STORE_KINDS, make_blob_store
from labelvault.storage.local import LocalBlobStore

__all__ = [
    "BLOB_STORE_KINDS",
    "BlobNotFoundError",
    "BlobStore",
    "BlobStoreError",
    "LocalBlobStore",
    "check_blob_id",
    "discard_blob",
    "make_blob_store",
]
