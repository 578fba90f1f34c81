"""S3 blob store: one bucket per project (``<prefix><project uuid hex>``), no shared buckets.

* The bucket is created on the first put, with every S3 Block Public Access setting on and
  object ownership ``BucketOwnerEnforced`` (ACLs disabled).
* A put streams: below ``part_size`` (default 8 MiB) it is one ``PutObject``; beyond, a
  multipart upload of ``part_size`` parts, completed only when the stream ends. If the stream
  raises, the upload is aborted: S3 shows the object whole or not at all.
* ``get`` streams the body with ``iter_chunks``; ``delete`` removes every version of the
  object; ``clear_incomplete`` aborts the multipart uploads a crashed put left pending;
  ``purge_project`` aborts pending uploads, deletes every object version and delete marker
  (in case versioning was turned on outside LabelVault) and then the bucket.
* Content is ciphertext only (see :mod:`labelvault.storage.base`); S3 encryption settings are
  left to the operator.

IAM needs on ``arn:aws:s3:::<prefix>*``: CreateBucket, DeleteBucket, PutBucketPublicAccessBlock,
PutBucketOwnershipControls, ListBucket, ListBucketVersions, ListBucketMultipartUploads,
Get/Put/DeleteObject, DeleteObjectVersion, AbortMultipartUpload.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from labelvault.storage.base import (
    BLOB_ID_PATTERN,
    BlobInfo,
    BlobNotFoundError,
    BlobStoreError,
    ClosingChunks,
    check_blob_id,
    check_chunks,
    check_project_id,
)

__all__ = ["DEFAULT_PART_SIZE", "S3BlobStore"]

DEFAULT_PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_READ_CHUNK = 1024 * 1024
_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]*")
_MISSING = {"404", "NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchVersion"}
_BATCH = 1000


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def _fail(op: str, exc: Exception) -> BlobStoreError:
    return BlobStoreError(f"S3 {op} failed: {_code(exc)}")


class S3BlobStore:
    """Blobs as S3 objects, one bucket per project."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        bucket_prefix: str = "labelvault-",
        *,
        part_size: int = DEFAULT_PART_SIZE,
        read_chunk_size: int = DEFAULT_READ_CHUNK,
    ) -> None:
        if not _PREFIX.fullmatch(bucket_prefix) or len(bucket_prefix) + 32 > 63:
            raise BlobStoreError(
                "S3 bucket prefix must be lowercase letters, digits and '-', start with a "
                "letter or digit, and be at most 31 characters"
            )
        if part_size < MIN_PART_SIZE:
            raise BlobStoreError("S3 multipart part size must be at least 5 MiB")
        if read_chunk_size < 1:
            raise BlobStoreError("read chunk size must be positive")
        self._factory = client_factory
        self._prefix = bucket_prefix
        self._part = part_size
        self._chunk = read_chunk_size
        self._local = threading.local()
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, **settings: Any) -> S3BlobStore:
        """``client_factory`` or ``client``, else ``endpoint_url`` / ``region_name`` for boto3;
        ``bucket_prefix``, ``part_size``, ``read_chunk_size``."""
        factory = settings.get("client_factory")
        if factory is None and settings.get("client") is not None:
            client = settings["client"]

            def factory() -> Any:
                return client

        if factory is None:
            import boto3  # type: ignore[import-untyped]

            endpoint, region = settings.get("endpoint_url"), settings.get("region_name")

            def factory() -> Any:
                return boto3.session.Session().client(
                    "s3", endpoint_url=endpoint, region_name=region
                )

        return cls(
            factory,
            str(settings.get("bucket_prefix") or "labelvault-"),
            part_size=int(settings.get("part_size") or DEFAULT_PART_SIZE),
            read_chunk_size=int(settings.get("read_chunk_size") or DEFAULT_READ_CHUNK),
        )

    @property
    def kind(self) -> str:
        return "s3"

    @property
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._factory()
        return client

    def bucket_of(self, project_id: uuid.UUID) -> str:
        """``<prefix><32 hex digits>``: a valid, project-unique bucket name."""
        return self._prefix + check_project_id(project_id).hex

    # -- buckets ---------------------------------------------------------------------------------
    def _ensure_bucket(self, bucket: str) -> None:
        with self._lock:
            if bucket in self._ready:
                return
        client = self._client
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise _fail("HeadBucket", exc) from None
            self._create_bucket(bucket)
        except BotoCoreError as exc:
            raise _fail("HeadBucket", exc) from None
        with self._lock:
            self._ready.add(bucket)

    def _create_bucket(self, bucket: str) -> None:
        client = self._client
        kwargs: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
        region = client.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            client.create_bucket(**kwargs)
        except ClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":
                raise _fail("CreateBucket", exc) from None
        except BotoCoreError as exc:
            raise _fail("CreateBucket", exc) from None
        try:
            client.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise _fail("PutPublicAccessBlock", exc) from None

    # -- blobs -----------------------------------------------------------------------------------
    def put(self, project_id: uuid.UUID, blob_id: str, chunks: Iterable[bytes]) -> int:
        bucket, key = self.bucket_of(project_id), check_blob_id(blob_id)
        check_chunks(chunks)
        self._ensure_bucket(bucket)
        client = self._client
        buf = bytearray()
        parts: list[dict[str, Any]] = []
        upload_id: str | None = None
        total = 0
        try:
            for chunk in chunks:
                buf += chunk
                total += len(chunk)
                while len(buf) > self._part:  # more data follows: never upload an empty last
                    if upload_id is None:
                        upload_id = str(
                            client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
                        )
                    parts.append(self._upload_part(bucket, key, upload_id, len(parts) + 1, buf))
                    del buf[: self._part]
            if upload_id is None:
                client.put_object(Bucket=bucket, Key=key, Body=bytes(buf))
            else:
                parts.append(self._upload_part(bucket, key, upload_id, len(parts) + 1, buf))
                client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
                upload_id = None
        except BaseException as exc:
            if upload_id is not None:
                with contextlib.suppress(ClientError, BotoCoreError):
                    client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise _fail("upload", exc) from None
            raise
        return total

    def _upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, buf: bytearray
    ) -> dict[str, Any]:
        body = bytes(buf[: self._part])
        out = self._client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": out["ETag"]}

    def get(self, project_id: uuid.UUID, blob_id: str) -> Iterator[bytes]:
        bucket, key = self.bucket_of(project_id), check_blob_id(blob_id)
        try:
            body = self._client.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise BlobNotFoundError(f"blob {blob_id} not found") from None
            raise _fail("GetObject", exc) from None
        except BotoCoreError as exc:
            raise _fail("GetObject", exc) from None
        return ClosingChunks(body.iter_chunks(self._chunk), body.close)

    def exists(self, project_id: uuid.UUID, blob_id: str) -> bool:
        bucket, key = self.bucket_of(project_id), check_blob_id(blob_id)
        try:
            self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise _fail("HeadObject", exc) from None
        except BotoCoreError as exc:
            raise _fail("HeadObject", exc) from None
        return True

    def _versions(self, bucket: str, prefix: str = "") -> Iterator[dict[str, Any]]:
        """Every object version and delete marker (``Key``, ``VersionId``) in the bucket."""
        pages = self._client.get_paginator("list_object_versions").paginate(
            Bucket=bucket, Prefix=prefix
        )
        for page in pages:
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                yield {"Key": item["Key"], "VersionId": item["VersionId"]}

    def _delete_all(self, bucket: str, objects: list[dict[str, Any]]) -> None:
        for i in range(0, len(objects), _BATCH):
            out = self._client.delete_objects(
                Bucket=bucket, Delete={"Objects": objects[i : i + _BATCH], "Quiet": True}
            )
            if out.get("Errors"):
                raise BlobStoreError(
                    f"S3 DeleteObjects failed for {len(out['Errors'])} object(s) in {bucket}"
                )

    def delete(self, project_id: uuid.UUID, blob_id: str) -> None:
        bucket, key = self.bucket_of(project_id), check_blob_id(blob_id)
        if not self.exists(project_id, blob_id):
            raise BlobNotFoundError(f"blob {blob_id} not found")
        try:
            self._client.delete_object(Bucket=bucket, Key=key)
            leftovers = [v for v in self._versions(bucket, key) if v["Key"] == key]
            self._delete_all(bucket, leftovers)
        except (ClientError, BotoCoreError) as exc:
            raise _fail("DeleteObject", exc) from None

    def list_ids(self, project_id: uuid.UUID) -> Iterator[str]:
        return iter([b.blob_id for b in self.list_blobs(project_id)])

    def list_blobs(self, project_id: uuid.UUID) -> Iterator[BlobInfo]:
        bucket = self.bucket_of(project_id)
        found: list[BlobInfo] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                found += [
                    BlobInfo(o["Key"], o["LastModified"])
                    for o in page.get("Contents", [])
                    if BLOB_ID_PATTERN.fullmatch(o["Key"])
                ]
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return iter(())
            raise _fail("ListObjectsV2", exc) from None
        except BotoCoreError as exc:
            raise _fail("ListObjectsV2", exc) from None
        return iter(sorted(found, key=lambda b: b.blob_id))

    def clear_incomplete(self, project_id: uuid.UUID, started_before: dt.datetime) -> int:
        bucket = self.bucket_of(project_id)
        client = self._client
        stale: list[tuple[str, str]] = []
        try:
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                stale += [
                    (up["Key"], up["UploadId"])
                    for up in page.get("Uploads", [])
                    if up["Initiated"] < started_before  # younger: a put may still be writing
                ]
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return 0
            raise _fail("ListMultipartUploads", exc) from None
        except BotoCoreError as exc:
            raise _fail("ListMultipartUploads", exc) from None
        aborted = failed = 0
        for key, upload_id in stale:
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if _code(exc) not in ("NoSuchUpload", *_MISSING):  # finished meanwhile: fine
                    failed += 1
                continue
            except BotoCoreError:
                failed += 1
                continue
            aborted += 1
        if failed:
            raise BlobStoreError(
                f"S3 AbortMultipartUpload failed for {failed} upload(s) in {bucket} "
                f"({aborted} aborted)"
            )
        return aborted

    def purge_project(self, project_id: uuid.UUID) -> int:
        bucket = self.bucket_of(project_id)
        client = self._client
        with self._lock:
            self._ready.discard(bucket)
        try:
            count = sum(1 for _ in self.list_ids(project_id))
            uploads = client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket)
            for page in uploads:
                for up in page.get("Uploads", []):
                    with contextlib.suppress(ClientError):
                        client.abort_multipart_upload(
                            Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
            for _ in range(3):  # writes racing with the purge may add objects: go again
                objects = list(self._versions(bucket))
                if not objects:
                    break
                self._delete_all(bucket, objects)
            client.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return 0
            raise _fail("purge", exc) from None
        except BotoCoreError as exc:
            raise _fail("purge", exc) from None
        return count

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket_prefix={self._prefix!r})"
