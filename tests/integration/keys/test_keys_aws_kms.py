"""The key service on the AWS KMS provider (moto's server over real HTTP) and real PostgreSQL:
keyring, rotation, retirement and shredding, with a per-scope KMS key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from tests.support.aws import moto_endpoint

from labelvault.crypto import (
    DataDestroyedError,
    WrappedKey,
    data_key_context,
    make_key_provider,
    peek_key_version,
)
from labelvault.crypto.providers.aws_kms import AwsKmsKeyProvider
from labelvault.db.context import ControlContext
from labelvault.keys.service import KeyService
from labelvault.keys.values import project_cipher
from labelvault.platform import Platform


@pytest.fixture(scope="module")
def kms_endpoint() -> Iterator[str]:
    with moto_endpoint() as endpoint:
        yield endpoint


@pytest.fixture()
def kms(kms_endpoint: str) -> Any:
    return boto3.client("kms", region_name="us-east-1", endpoint_url=kms_endpoint)


@pytest.fixture()
def provider(kms_endpoint: str, kms: Any) -> AwsKmsKeyProvider:
    arn = kms.create_key(Description="labelvault control KEK")["KeyMetadata"]["Arn"]
    p = make_key_provider(
        "aws-kms",
        key_id=arn,
        endpoint_url=kms_endpoint,
        region_name="us-east-1",
        alias_prefix=f"lvit/{uuid.uuid4().hex[:8]}",
    )
    assert isinstance(p, AwsKmsKeyProvider)
    return p


async def test_key_service_on_aws_kms(
    platform: Platform, provider: AwsKmsKeyProvider, kms: Any
) -> None:
    keys = KeyService(platform.db, provider)
    pid = uuid.uuid4()  # a scope of its own (no project rows are needed for the keys)
    scope = str(pid)
    try:
        cipher = await project_cipher(keys, pid)
        first = cipher.encrypt("items", "r1", "content", b"first secret")
        ring = await keys.keyring(scope)
        assert ring.versions == [1]

        async with platform.db.control_tx(ControlContext.system_context()) as conn:
            cur = await conn.execute(
                "SELECT wrapped, kek_id FROM lv_control.data_keys WHERE scope = %s", [scope]
            )
            wrapped_v1, kek_id = await cur.fetchone()  # type: ignore[misc]
        wrapped = WrappedKey.from_bytes(bytes(wrapped_v1))
        assert wrapped.provider == "aws-kms" and kek_id == provider.current_kek_id(scope)
        assert kek_id != provider.current_kek_id("control")  # a KMS key per scope
        meta = kms.describe_key(KeyId=provider.alias_of(scope))["KeyMetadata"]
        assert meta["KeyState"] == "Enabled"

        # rotation: new writes on version 2, version 1 still reads (unwrapped again by KMS)
        assert await keys.rotate(scope) == 2
        cipher = await project_cipher(keys, pid)
        second = cipher.encrypt("items", "r2", "content", b"second secret")
        assert peek_key_version(second) == 2
        fresh = KeyService(platform.db, provider)
        other = await project_cipher(fresh, pid)
        assert other.decrypt("items", "r1", "content", first) == b"first secret"
        assert other.decrypt("items", "r2", "content", second) == b"second secret"
        await fresh.close()

        # retiring version 1 (nothing uses it any more) destroys it
        assert await keys.retire_unused(scope, {2}) == [1]
        cipher = await project_cipher(keys, pid)
        with pytest.raises(DataDestroyedError):
            cipher.decrypt("items", "r1", "content", first)
        assert cipher.decrypt("items", "r2", "content", second) == b"second secret"
        async with platform.db.control_tx(ControlContext.system_context()) as conn:
            cur = await conn.execute(
                "SELECT wrapped FROM lv_control.data_keys WHERE scope = %s AND version = 2",
                [scope],
            )
            wrapped_v2 = WrappedKey.from_bytes(bytes((await cur.fetchone())[0]))  # type: ignore[index]

        # shredding: tombstones in the database, the scope's KMS key scheduled for deletion
        assert await keys.shred(scope) == [2]
        meta = kms.describe_key(KeyId=kek_id)["KeyMetadata"]
        assert meta["KeyState"] == "PendingDeletion"
        with pytest.raises(DataDestroyedError):
            cipher.decrypt("items", "r2", "content", second)
        fresh = KeyService(platform.db, provider)
        with pytest.raises(DataDestroyedError):
            await fresh.keyring(scope)
        await fresh.close()
        with pytest.raises(DataDestroyedError):  # a backed-up wrapped key is useless too
            provider.unwrap(wrapped_v2, data_key_context(scope, 2))
    finally:
        await keys.close()
