"""AWS KMS provider against moto's server over real HTTP (no in-process mocking of boto3)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from tests.support.aws import moto_endpoint

from labelvault.crypto import (
    DataDestroyedError,
    DecryptionError,
    KeyProvider,
    KeyProviderError,
    WrappedKey,
    decrypt_value,
    encrypt_value,
    generate_wrapped_data_key,
    make_key_provider,
    unwrap_data_key,
    wrap_data_key,
)
from labelvault.crypto.context import EncryptionContext
from labelvault.crypto.envelope import DataKey
from labelvault.crypto.providers.aws_kms import AwsKmsKeyProvider, _fail

CTX = {"scope": "project-a", "purpose": "data-key", "version": "1"}
CTRL = {"scope": "control", "purpose": "data-key", "version": "1"}
DEK = bytes(range(32))


@pytest.fixture(scope="module")
def kms_endpoint() -> Iterator[str]:
    with moto_endpoint() as endpoint:
        yield endpoint


@pytest.fixture()
def kms(kms_endpoint: str) -> Any:
    return boto3.client("kms", region_name="us-east-1", endpoint_url=kms_endpoint)


@pytest.fixture()
def key_arn(kms: Any) -> str:
    return str(kms.create_key(Description="labelvault test KEK")["KeyMetadata"]["Arn"])


@pytest.fixture()
def prefix() -> str:
    return f"lvtest/{uuid.uuid4().hex[:12]}"  # isolates aliases between tests on one server


@pytest.fixture()
def provider(kms_endpoint: str, key_arn: str, prefix: str) -> AwsKmsKeyProvider:
    p = make_key_provider(
        "aws-kms",
        key_id=key_arn,
        endpoint_url=kms_endpoint,
        region_name="us-east-1",
        alias_prefix=prefix,
    )
    assert isinstance(p, AwsKmsKeyProvider)
    return p


def ctx(scope: str, version: int = 1) -> dict[str, str]:
    return {"scope": scope, "purpose": "data-key", "version": str(version)}


def test_round_trip_control_uses_configured_key(provider: AwsKmsKeyProvider, key_arn: str) -> None:
    assert isinstance(provider, KeyProvider)
    assert provider.name == "aws-kms"
    assert provider.current_kek_id() == key_arn == provider.current_kek_id("control")
    wrapped = provider.wrap(DEK, CTRL)
    assert wrapped.kek_id == key_arn and DEK not in wrapped.wrapped
    stored = WrappedKey.from_bytes(wrapped.to_bytes())
    assert provider.unwrap(stored, CTRL) == DEK


def test_each_scope_gets_its_own_kms_key(
    provider: AwsKmsKeyProvider, kms: Any, key_arn: str, prefix: str, kms_endpoint: str
) -> None:
    a1 = provider.wrap(DEK, ctx("project-a"))
    a2 = provider.wrap(DEK, ctx("project-a", 2))
    b = provider.wrap(DEK, ctx("project-b"))
    assert a1.kek_id == a2.kek_id != b.kek_id
    assert key_arn not in (a1.kek_id, b.kek_id)
    assert provider.current_kek_id("project-a") == a1.kek_id
    meta = kms.describe_key(KeyId=f"alias/{prefix}/project-a")["KeyMetadata"]
    assert meta["Arn"] == a1.kek_id
    assert kms.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"]
    tags = kms.list_resource_tags(KeyId=meta["KeyId"])["Tags"]
    assert {"TagKey": "labelvault:scope", "TagValue": "project-a"} in tags
    assert provider.unwrap(a1, ctx("project-a")) == DEK
    # another process (fresh cache) finds the scope key through the alias
    other = AwsKmsKeyProvider(kms, key_arn, alias_prefix=prefix)
    assert other.wrap(DEK, ctx("project-a")).kek_id == a1.kek_id
    assert other.unwrap(a2, ctx("project-a", 2)) == DEK
    with pytest.raises(KeyProviderError, match="invalid key scope"):
        provider.wrap(DEK, ctx("../x"))
    with pytest.raises(KeyProviderError, match="needs a 'scope'"):
        provider.wrap(DEK, {"purpose": "data-key"})


def test_wrong_context_fails(provider: AwsKmsKeyProvider) -> None:
    wrapped = provider.wrap(DEK, CTX)
    for bad in ({**CTX, "scope": "project-b"}, {**CTX, "version": "2"}, {}):
        with pytest.raises(DecryptionError):
            provider.unwrap(wrapped, bad)
    tampered = WrappedKey("aws-kms", wrapped.kek_id, wrapped.wrapped[:-1] + b"\x00")
    with pytest.raises(DecryptionError):
        provider.unwrap(tampered, CTX)


def test_rewrap_to_another_key(provider: AwsKmsKeyProvider, kms: Any, key_arn: str) -> None:
    old = provider.wrap(DEK, CTRL)
    same = provider.rewrap(old, CTRL)
    assert same.kek_id == key_arn and provider.unwrap(same, CTRL) == DEK
    new_arn = str(kms.create_key()["KeyMetadata"]["Arn"])
    assert provider.use_key(new_arn) == new_arn
    moved = provider.rewrap(old, CTRL)
    assert moved.kek_id == new_arn
    assert provider.unwrap(moved, CTRL) == DEK
    assert provider.unwrap(old, CTRL) == DEK  # the old KMS key still decrypts its wraps
    with pytest.raises(DecryptionError):
        provider.rewrap(old, {**CTRL, "version": "9"})


def test_rotate_kek_keeps_old_wraps(provider: AwsKmsKeyProvider, kms: Any, key_arn: str) -> None:
    old = provider.wrap(DEK, CTRL)
    assert provider.rotate_kek() == key_arn
    rotations = kms.list_key_rotations(KeyId=key_arn)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]
    assert provider.unwrap(old, CTRL) == DEK
    assert provider.unwrap(provider.rewrap(old, CTRL), CTRL) == DEK
    # per scope: the project's own key rotates, ARN unchanged, old wraps still open
    a = provider.wrap(DEK, CTX)
    assert provider.rotate_kek("project-a") == a.kek_id
    assert len(kms.list_key_rotations(KeyId=a.kek_id)["Rotations"]) == 1
    moved = provider.rewrap(a, CTX)
    assert moved.kek_id == a.kek_id and provider.unwrap(moved, CTX) == DEK


def test_generate_data_key_and_envelope(provider: AwsKmsKeyProvider) -> None:
    key, wrapped = generate_wrapped_data_key(provider, "project-a", 1)
    assert wrapped.kek_id == provider.current_kek_id("project-a")
    ctx_ = EncryptionContext("project-a", "items", "r1", "content")
    blob = encrypt_value(key, b"hello", ctx_)
    again = unwrap_data_key(provider, wrapped, "project-a", 1)
    assert decrypt_value(lambda v: again, blob, ctx_) == b"hello"
    wrapped2 = wrap_data_key(provider, DataKey(2, DEK), "project-a")
    with pytest.raises(DecryptionError):
        unwrap_data_key(provider, wrapped2, "project-b", 2)


def test_destroy_scope_shreds_every_copy(
    provider: AwsKmsKeyProvider, kms: Any, key_arn: str, prefix: str
) -> None:
    a1 = provider.wrap(DEK, ctx("project-a"))
    _, a2 = provider.generate_data_key(ctx("project-a", 2))
    a3 = provider.rewrap(a1, ctx("project-a"))
    backup = [WrappedKey.from_bytes(w.to_bytes()) for w in (a1, a2, a3)]  # "database backup"
    b = provider.wrap(DEK, ctx("project-b"))
    c = provider.wrap(DEK, CTRL)
    scope_key = a1.kek_id

    provider.destroy_scope("project-a")

    meta = kms.describe_key(KeyId=scope_key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and not meta["Enabled"]
    aliases = [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
    assert f"alias/{prefix}/project-a" not in aliases
    assert f"alias/{prefix}/project-b" in aliases
    fresh = AwsKmsKeyProvider(kms, key_arn, alias_prefix=prefix)  # another process, no cache
    for p in (provider, fresh):
        for w in [a1, a2, a3, *backup]:
            version = 2 if w in (a2, backup[1]) else 1
            with pytest.raises(DataDestroyedError, match="project-a was destroyed"):
                p.unwrap(w, ctx("project-a", version))
        with pytest.raises(DataDestroyedError):
            p.rewrap(a1, ctx("project-a"))
        assert p.unwrap(b, ctx("project-b")) == DEK
        assert p.unwrap(c, CTRL) == DEK
    provider.destroy_scope("project-a")  # idempotent
    fresh.destroy_scope("project-a")
    provider.destroy_scope("never-used")
    with pytest.raises(KeyProviderError, match="control"):
        provider.destroy_scope("control")
    assert provider.unwrap(c, CTRL) == DEK


def test_interrupted_destroy_is_completed_and_refuses_wraps(
    provider: AwsKmsKeyProvider, kms: Any, key_arn: str, prefix: str
) -> None:
    a = provider.wrap(DEK, CTX)
    # crash after ScheduleKeyDeletion, before DeleteAlias
    key_id = kms.describe_key(KeyId=a.kek_id)["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    fresh = AwsKmsKeyProvider(kms, key_arn, alias_prefix=prefix)
    with pytest.raises(DataDestroyedError):
        fresh.wrap(DEK, CTX)  # alias still points at the doomed key: no new wraps under it
    with pytest.raises(DataDestroyedError):
        fresh.unwrap(a, CTX)
    fresh.destroy_scope("project-a")
    assert f"alias/{prefix}/project-a" not in [
        x["AliasName"] for x in kms.list_aliases()["Aliases"]
    ]


def test_disabled_key_is_an_outage_not_a_shred(provider: AwsKmsKeyProvider, kms: Any) -> None:
    a = provider.wrap(DEK, CTX)
    key_id = kms.describe_key(KeyId=a.kek_id)["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    with pytest.raises(KeyProviderError, match="disabled") as info:
        provider.unwrap(a, CTX)
    assert not isinstance(info.value, DataDestroyedError)
    kms.enable_key(KeyId=key_id)
    assert provider.unwrap(a, CTX) == DEK


def test_moto_decrypt_on_pending_deletion_key(provider: AwsKmsKeyProvider, kms: Any) -> None:
    """Real KMS refuses Decrypt on a disabled / pending-deletion key (KMSInvalidStateException,
    DisabledException). moto 5 does not enforce key state on Decrypt, so the provider checks the
    state itself (DescribeKey) before every unwrap; both paths end in DataDestroyedError."""
    a = provider.wrap(DEK, CTX)
    provider.destroy_scope("project-a")
    try:
        kms.decrypt(CiphertextBlob=a.wrapped, KeyId=a.kek_id, EncryptionContext=CTX)
        moto_rejects = False
    except ClientError:
        moto_rejects = True
    with pytest.raises(DataDestroyedError):
        provider.unwrap(a, CTX)
    # what the provider makes of real KMS's answers
    for code in ("KMSInvalidStateException", "NotFoundException"):
        err = ClientError({"Error": {"Code": code, "Message": "x"}}, "Decrypt")
        assert isinstance(_fail("Decrypt", err, "project-a"), DataDestroyedError)
        assert not isinstance(_fail("Decrypt", err, "control"), DataDestroyedError)
    disabled = ClientError({"Error": {"Code": "DisabledException", "Message": "x"}}, "Decrypt")
    assert not isinstance(_fail("Decrypt", disabled, "project-a"), DataDestroyedError)
    assert moto_rejects in (True, False)  # documented above; either way the provider refuses


def test_backend_errors_are_key_provider_errors(kms_endpoint: str) -> None:
    missing = make_key_provider(
        "aws-kms",
        key_id="arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        endpoint_url=kms_endpoint,
        region_name="us-east-1",
    )
    with pytest.raises(KeyProviderError, match="AWS KMS"):
        missing.wrap(DEK, CTRL)
    with pytest.raises(KeyProviderError, match="needs a key id"):
        make_key_provider("aws-kms", endpoint_url=kms_endpoint, region_name="us-east-1")
    for bad in ("aws/x", "a//b", "", "bad prefix"):
        with pytest.raises(KeyProviderError, match="alias prefix"):
            AwsKmsKeyProvider(object(), "k", alias_prefix=bad)
