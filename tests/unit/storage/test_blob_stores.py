"""Both blob stores through one test class: the local directory and S3 (moto server, HTTP)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from tests.support.aws import moto_endpoint

from labelvault.crypto import DataKey, EncryptionContext, decrypt_stream, encrypt_stream
from labelvault.kernel.errors import InvalidInputError, NotFoundError
from labelvault.storage import (
    BlobNotFoundError,
    BlobStore,
    BlobStoreError,
    LocalBlobStore,
    make_blob_store,
)
from labelvault.storage.s3 import S3BlobStore

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_endpoint() as endpoint:
        yield endpoint


@pytest.fixture()
def s3(s3_endpoint: str) -> Any:
    return boto3.client("s3", region_name="us-east-1", endpoint_url=s3_endpoint)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return make_blob_store("local", root=tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    prefix = f"lvt{uuid.uuid4().hex[:8]}-"  # buckets of one test never collide with another's
    return make_blob_store(
        "s3", endpoint_url=endpoint, region_name="us-east-1", bucket_prefix=prefix
    )


def container_exists(store: BlobStore, project: uuid.UUID) -> bool:
    if isinstance(store, LocalBlobStore):
        return store.project_dir(project).exists()
    assert isinstance(store, S3BlobStore)
    try:
        store._client.head_bucket(Bucket=store.bucket_of(project))
    except Exception:
        return False
    return True


def leftovers(store: BlobStore, project: uuid.UUID) -> list[str]:
    """Temporary files / pending multipart uploads: anything that is not a finished blob."""
    if isinstance(store, LocalBlobStore):
        d = store.project_dir(project)
        return [p.name for p in d.iterdir() if p.name.startswith(".")] if d.exists() else []
    assert isinstance(store, S3BlobStore)
    try:
        out = store._client.list_multipart_uploads(Bucket=store.bucket_of(project))
    except Exception:
        return []
    return [u["Key"] for u in out.get("Uploads", [])]


def start_unfinished_write(store: BlobStore, project: uuid.UUID, blob_id: str) -> None:
    """What a put that crashed half-way leaves: a temporary file, a pending multipart upload."""
    if isinstance(store, LocalBlobStore):  # named as a put names it
        where = store.project_dir(project)
        fd, _ = tempfile.mkstemp(prefix=f".{blob_id}.", suffix=".tmp", dir=where)
        os.close(fd)
        return
    assert isinstance(store, S3BlobStore)
    store._client.create_multipart_upload(Bucket=store.bucket_of(project), Key=blob_id)


def pseudo_random(n: int, seed: bytes = b"x") -> Iterator[bytes]:
    """n bytes in 1 MiB pieces, deterministic, without holding them all."""
    block = hashlib.sha256(seed).digest() * (MiB // 32)
    for i in range(0, n, MiB):
        yield bytes([i // MiB % 251]) + block[1 : min(MiB, n - i)]


class TestBlobStore:
    def test_protocol(self, store: BlobStore) -> None:
        assert isinstance(store, BlobStore) and store.kind in ("local", "s3")

    def test_encrypted_20_mib_round_trip(self, store: BlobStore) -> None:
        project = uuid.uuid4()
        key = DataKey.generate(1)
        ctx = EncryptionContext(str(project), "media", "img-1", "content")
        plain_hash = hashlib.sha256()
        size = 20 * MiB + 12345

        def source() -> Iterator[bytes]:
            for piece in pseudo_random(size):
                plain_hash.update(piece)
                yield piece

        written = store.put(project, "img-1", encrypt_stream(key, ctx, source()))
        assert written > size  # header + tags: the store got ciphertext
        assert store.exists(project, "img-1")
        stored = b"".join(store.get(project, "img-1"))
        assert len(stored) == written
        assert hashlib.sha256(b"".join(pseudo_random(size))).digest() not in stored  # sanity
        out_hash = hashlib.sha256()
        received = 0
        for piece in decrypt_stream(lambda v: key, ctx, store.get(project, "img-1")):
            out_hash.update(piece)
            received += len(piece)
        assert received == size and out_hash.digest() == plain_hash.digest()
        assert list(store.list_ids(project)) == ["img-1"]

    def test_small_blobs_and_overwrite(self, store: BlobStore) -> None:
        project = uuid.uuid4()
        assert store.put(project, "a", []) == 0
        assert b"".join(store.get(project, "a")) == b""
        assert store.put(project, "a", [b"one", b"", b"two"]) == 6
        assert b"".join(store.get(project, "a")) == b"onetwo"
        assert store.put(project, "a", iter([b"replaced"])) == 8
        assert b"".join(store.get(project, "a")) == b"replaced"
        with pytest.raises(InvalidInputError):
            store.put(project, "b", b"bytes, not chunks")  # type: ignore[arg-type]

    @pytest.mark.parametrize("fail_after", [3, 9 * MiB])
    def test_failed_stream_leaves_nothing(self, store: BlobStore, fail_after: int) -> None:
        project = uuid.uuid4()
        store.put(project, "kept", [b"old version"])

        def failing() -> Iterator[bytes]:
            sent = 0
            for piece in pseudo_random(20 * MiB):
                if sent >= fail_after:
                    raise RuntimeError("client went away")
                chunk = piece[: max(1, min(len(piece), fail_after - sent))]
                sent += len(chunk)
                yield chunk

        with pytest.raises(RuntimeError, match="went away"):
            store.put(project, "new", failing())
        with pytest.raises(RuntimeError, match="went away"):
            store.put(project, "kept", failing())
        assert not store.exists(project, "new")
        assert list(store.list_ids(project)) == ["kept"]
        assert b"".join(store.get(project, "kept")) == b"old version"  # replacement was atomic
        assert leftovers(store, project) == []

    @pytest.mark.parametrize(
        "bad", ["../x", "", "a" * 129, "a\x00b", "a/b", ".hidden", "..", "x\n", "é", "a b"]
    )
    def test_invalid_ids_refused(self, store: BlobStore, bad: str) -> None:
        project = uuid.uuid4()
        with pytest.raises(InvalidInputError):
            store.put(project, bad, [b"x"])
        for op in (store.get, store.exists, store.delete):
            with pytest.raises(InvalidInputError):
                op(project, bad)
        with pytest.raises(InvalidInputError):
            store.put(str(project), "ok", [b"x"])  # type: ignore[arg-type]
        assert not container_exists(store, project)

    def test_valid_edge_ids(self, store: BlobStore) -> None:
        project = uuid.uuid4()
        for ok in ("a" * 128, "0", "A.b_c-d", "x..y"):
            store.put(project, ok, [ok.encode()])
            assert b"".join(store.get(project, ok)) == ok.encode()

    def test_not_found(self, store: BlobStore) -> None:
        project = uuid.uuid4()
        with pytest.raises(BlobNotFoundError):
            store.get(project, "missing")  # no container at all
        store.put(project, "present", [b"x"])
        with pytest.raises(BlobNotFoundError) as info:
            store.get(project, "missing")
        assert isinstance(info.value, NotFoundError) and info.value.status == 404
        assert not store.exists(project, "missing")
        with pytest.raises(BlobNotFoundError):
            store.delete(project, "missing")
        assert list(store.list_ids(uuid.uuid4())) == []

    def test_delete(self, store: BlobStore) -> None:
        project = uuid.uuid4()
        store.put(project, "a", [b"1"])
        store.put(project, "b", [b"2"])
        store.delete(project, "a")
        assert not store.exists(project, "a") and store.exists(project, "b")
        assert list(store.list_ids(project)) == ["b"]
        with pytest.raises(BlobNotFoundError):
            store.get(project, "a")

    def test_purge_and_isolation(self, store: BlobStore) -> None:
        p1, p2 = uuid.uuid4(), uuid.uuid4()
        store.put(p1, "same", [b"project one"])
        store.put(p2, "same", [b"project two"])
        for i in range(5):
            store.put(p1, f"blob-{i}", [os.urandom(100)])
        assert b"".join(store.get(p1, "same")) == b"project one"
        assert b"".join(store.get(p2, "same")) == b"project two"
        store.delete(p1, "blob-4")
        assert store.exists(p2, "same")
        assert store.purge_project(p1) == 5
        assert not container_exists(store, p1)
        assert list(store.list_ids(p1)) == []
        with pytest.raises(BlobNotFoundError):
            store.get(p1, "same")
        assert b"".join(store.get(p2, "same")) == b"project two"
        assert container_exists(store, p2)
        assert store.purge_project(p1) == 0  # idempotent
        store.put(p1, "again", [b"new life"])  # the container is recreated on demand
        assert list(store.list_ids(p1)) == ["again"]

    def test_list_blobs_with_their_write_times(self, store: BlobStore) -> None:
        project = uuid.uuid4()
        assert list(store.list_blobs(project)) == []  # no container yet
        names = ["b", "a.2", "A", "0-x"]
        before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)  # S3 keeps whole seconds
        for name in names:
            store.put(project, name, [b"x"])
        after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        listed = list(store.list_blobs(project))
        assert [b.blob_id for b in listed] == sorted(names) == list(store.list_ids(project))
        assert all(before <= b.written_at <= after for b in listed)

    def test_unfinished_writes_cleared_only_once_old(self, store: BlobStore) -> None:
        project = uuid.uuid4()
        store.put(project, "done", [b"x"])
        start_unfinished_write(store, project, "half")
        now = dt.datetime.now(dt.UTC)
        # started after the cutoff: a put may still be writing it (moto dates every upload
        # 2010-11-10 20:48:33, so its cutoff is set before that)
        before = now - dt.timedelta(hours=1)
        if isinstance(store, S3BlobStore):
            before = dt.datetime(2010, 11, 10, 20, tzinfo=dt.UTC)
        assert store.clear_incomplete(project, before) == 0
        assert len(leftovers(store, project)) == 1
        assert store.clear_incomplete(project, now + dt.timedelta(minutes=1)) == 1
        assert leftovers(store, project) == []
        assert list(store.list_ids(project)) == ["done"]
        assert store.clear_incomplete(uuid.uuid4(), now) == 0  # no container

    def test_partial_read_releases_the_source(self, store: BlobStore) -> None:
        project = uuid.uuid4()
        store.put(project, "big", pseudo_random(3 * MiB))
        with store.get(project, "big") as chunks:  # type: ignore[attr-defined]
            first = next(chunks)
            assert first
        assert list(chunks) == []  # closed: no more data, no leaked handle


def test_local_layout_and_modes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    project = uuid.uuid4()
    store.put(project, "a.bin", [b"ciphertext"])
    d = tmp_path / "blobs" / str(project)
    assert (d / "a.bin").read_bytes() == b"ciphertext"
    assert stat.S_IMODE((tmp_path / "blobs").stat().st_mode) == 0o700
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "a.bin").stat().st_mode) == 0o600
    # a symlink planted in the project directory is not followed
    (tmp_path / "secret").write_bytes(b"outside")
    os.symlink(tmp_path / "secret", d / "link")
    with pytest.raises(BlobNotFoundError):
        store.get(project, "link")
    assert not store.exists(project, "link")
    assert list(store.list_ids(project)) == ["a.bin"]
    assert store.purge_project(project) == 1
    assert not d.exists() and (tmp_path / "secret").exists()


def test_local_write_failure_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    project = uuid.uuid4()

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(BlobStoreError, match="No space left"):
        store.put(project, "a", [b"x"])
    monkeypatch.undo()
    assert not store.exists(project, "a")
    assert list((tmp_path / str(project)).iterdir()) == []


def test_s3_bucket_per_project_private_and_multipart(s3: Any, s3_endpoint: str) -> None:
    store = S3BlobStore(lambda: s3, "lv-mp-")
    project = uuid.uuid4()
    bucket = store.bucket_of(project)
    assert bucket == "lv-mp-" + project.hex and len(bucket) <= 63
    assert store.put(project, "big", pseudo_random(17 * MiB)) == 17 * MiB
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == 17 * MiB
    assert head["ETag"].strip('"').endswith("-3")  # 8 + 8 + 1 MiB parts
    store.put(project, "small", [b"x" * 100])
    assert "-" not in s3.head_object(Bucket=bucket, Key="small")["ETag"]  # single PutObject
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    assert store.purge_project(project) == 2
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_s3_versioned_bucket_fully_purged(s3: Any) -> None:
    store = S3BlobStore(lambda: s3, "lv-ver-")
    project = uuid.uuid4()
    store.put(project, "a", [b"v1"])
    bucket = store.bucket_of(project)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    store.put(project, "a", [b"v2"])
    store.put(project, "b", [b"v1"])
    store.put(project, "b", [b"v2"])
    store.delete(project, "b")
    versions = s3.list_object_versions(Bucket=bucket)
    assert [v["Key"] for v in versions.get("Versions", [])] == ["a", "a"]  # b: every version
    assert not versions.get("DeleteMarkers")
    s3.create_multipart_upload(Bucket=bucket, Key="pending")
    assert store.purge_project(project) == 1
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_factory_and_settings(tmp_path: Path, s3: Any) -> None:
    assert isinstance(make_blob_store("local", root=tmp_path), LocalBlobStore)
    assert isinstance(make_blob_store("s3", client=s3), S3BlobStore)
    with pytest.raises(BlobStoreError, match="unknown blob store 'nope'"):
        make_blob_store("nope")
    with pytest.raises(BlobStoreError, match="needs 'root'"):
        make_blob_store("local")
    for bad in ("UPPER-", "a" * 32, "-x", "a_b"):
        with pytest.raises(BlobStoreError, match="bucket prefix"):
            S3BlobStore(lambda: s3, bad)
    with pytest.raises(BlobStoreError, match="5 MiB"):
        S3BlobStore(lambda: s3, part_size=MiB)
