"""Build a blob store by kind: ``make_blob_store("local", root=...)`` (the embedded default) or
``make_blob_store("s3", endpoint_url=..., region_name=..., bucket_prefix=...)``."""

from __future__ import annotations

from typing import Any, Literal

from labelvault.storage.base import BlobStore, BlobStoreError

__all__ = ["BLOB_STORE_KINDS", "make_blob_store"]

BLOB_STORE_KINDS = frozenset({"local", "s3"})


def make_blob_store(kind: Literal["local", "s3"] | str, **settings: Any) -> BlobStore:
    """See :meth:`LocalBlobStore.from_settings` and :meth:`S3BlobStore.from_settings`."""
    if kind == "local":
        from labelvault.storage.local import LocalBlobStore

        return LocalBlobStore.from_settings(**settings)
    if kind == "s3":
        from labelvault.storage.s3 import S3BlobStore  # boto3 loads only for S3

        return S3BlobStore.from_settings(**settings)
    known = ", ".join(sorted(BLOB_STORE_KINDS))
    raise BlobStoreError(f"unknown blob store {kind!r} (known: {known})")
