"""AWS KMS key provider (boto3).

* One KMS key per scope: a project's data keys are wrapped under its own symmetric KMS key,
  created on the first wrap for the scope (``CreateKey`` with a ``labelvault:scope`` tag,
  ``EnableKeyRotation``, alias ``alias/<prefix>/<scope>``, prefix default ``labelvault``) and
  found through the alias afterwards. The ``"control"`` scope uses the configured key id.
* wrap: ``Encrypt``; ``generate_data_key``: ``GenerateDataKey``; unwrap: ``Decrypt`` with
  ``KeyId`` pinned to the key recorded in the wrapped key; rewrap: ``ReEncrypt`` to the
  scope's current key (KMS never returns the plaintext to us).
* The context mapping is passed as KMS ``EncryptionContext`` (it appears in CloudTrail; it is
  not secret).
* ``destroy_scope``: ``DisableKey``, ``ScheduleKeyDeletion(PendingWindowInDays=7)``,
  ``DeleteAlias``. Every wrap of the scope, including copies in database backups, then fails
  with DataDestroyedError. Within the pending window an administrator with
  ``kms:CancelKeyDeletion`` could still restore the key: shredding is final when KMS deletes it.
  Before every unwrap/rewrap the key state is checked with ``DescribeKey`` (real KMS also
  refuses ``Decrypt`` on a disabled or pending-deletion key; moto 5 does not).
* IAM needs, besides Encrypt/Decrypt/ReEncrypt*/GenerateDataKey/DescribeKey: ``CreateKey``,
  ``TagResource``, ``EnableKeyRotation``, ``CreateAlias``, ``DeleteAlias``, ``DisableKey``,
  ``ScheduleKeyDeletion`` (restrict the alias ones to ``alias/<prefix>/*``).

KEK rotation: KMS rotates key *material* in place (``RotateKeyOnDemand``; yearly with
``EnableKeyRotation``, which is switched on for every scope key). The key ARN stays the same
and each ciphertext records its backing material internally, so old wraps keep decrypting and
``rotate_kek(scope)`` returns the same ARN. To move the control scope to a different KMS key,
call :meth:`use_key` and run a rewrap job: ``rewrap`` re-encrypts to the key now in use.

A destroyed scope is terminal: the alias is gone, so a later wrap for the same scope would
create a new, unrelated key (old wraps stay unreadable). Scopes are project ids, never reused.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Mapping
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from labelvault.crypto.context import CONTROL_SCOPE
from labelvault.crypto.errors import DataDestroyedError, DecryptionError, KeyProviderError
from labelvault.crypto.providers.base import (
    WrappedKey,
    check_scope,
    refuse_control_destroy,
    scope_for_unwrap,
    scope_for_wrap,
)

__all__ = ["AwsKmsKeyProvider"]

_AUTH_FAILURES = {"InvalidCiphertextException", "IncorrectKeyException"}
_GONE = {"NotFoundException", "KMSInvalidStateException"}
_GONE_STATES = {"PendingDeletion", "PendingReplicaDeletion"}
_PREFIX = re.compile(r"^(?!aws(/|$))[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
DEFAULT_ALIAS_PREFIX = "labelvault"
DEFAULT_DELETION_WINDOW_DAYS = 7


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def _destroyed(scope: str) -> DataDestroyedError:
    return DataDestroyedError(
        f"data destroyed: the KMS key of scope {scope} was destroyed (crypto-shredded)"
    )


def _fail(op: str, exc: Exception, scope: str | None = None) -> Exception:
    code = _code(exc)
    if isinstance(exc, ClientError):
        if code in _AUTH_FAILURES:
            return DecryptionError(
                "wrapped key failed authentication in KMS (wrong key or encryption context)"
            )
        if code in _GONE and scope is not None and scope != CONTROL_SCOPE:
            return _destroyed(scope)
        return KeyProviderError(f"AWS KMS {op} failed: {code}")
    return KeyProviderError(f"AWS KMS {op} failed: {code}")


class AwsKmsKeyProvider:
    """Wraps data keys with one AWS KMS symmetric key per scope."""

    def __init__(
        self,
        client: Any,
        key_id: str,
        *,
        alias_prefix: str = DEFAULT_ALIAS_PREFIX,
        deletion_window_days: int = DEFAULT_DELETION_WINDOW_DAYS,
    ) -> None:
        if not key_id:
            raise KeyProviderError("AWS KMS key provider needs a key id, ARN or alias")
        if not _PREFIX.match(alias_prefix):
            raise KeyProviderError(
                "AWS KMS alias prefix must be [A-Za-z0-9_-] segments separated by '/' "
                "and must not start with 'aws'"
            )
        if not 7 <= deletion_window_days <= 30:
            raise KeyProviderError("AWS KMS deletion window must be 7..30 days")
        self._client = client
        self._key_id = key_id
        self._arn: str | None = None
        self._prefix = alias_prefix
        self._window = deletion_window_days
        self._scope_arns: dict[str, str] = {}
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()

    @classmethod
    def from_settings(cls, **settings: Any) -> AwsKmsKeyProvider:
        """``key_id`` (required: the control scope's key), ``alias_prefix``,
        ``deletion_window_days``, ``region_name``, ``endpoint_url``, or a ready ``client``."""
        client = settings.get("client")
        if client is None:
            client = boto3.client(
                "kms",
                region_name=settings.get("region_name"),
                endpoint_url=settings.get("endpoint_url"),
            )
        return cls(
            client,
            str(settings.get("key_id") or ""),
            alias_prefix=str(settings.get("alias_prefix") or DEFAULT_ALIAS_PREFIX),
            deletion_window_days=int(
                settings.get("deletion_window_days") or DEFAULT_DELETION_WINDOW_DAYS
            ),
        )

    @property
    def name(self) -> str:
        return "aws-kms"

    def alias_of(self, scope: str) -> str:
        """``alias/<prefix>/<scope>``: the alias of a project scope's KMS key."""
        return f"alias/{self._prefix}/{check_scope(scope)}"

    def _control_arn(self) -> str:
        with self._lock:
            if self._arn is None:
                try:
                    meta = self._client.describe_key(KeyId=self._key_id)["KeyMetadata"]
                except (ClientError, BotoCoreError) as exc:
                    raise _fail("DescribeKey", exc) from None
                self._arn = str(meta["Arn"])
            return self._arn

    def _scope_arn(self, scope: str) -> str:
        """ARN of the scope's key, created (key, rotation, alias) on first use."""
        check_scope(scope)
        if scope == CONTROL_SCOPE:
            return self._control_arn()
        with self._lock:
            arn = self._scope_arns.get(scope)
        if arn is not None:
            return arn
        with self._create_lock:
            arn = self._find_scope_key(scope)
            if arn is None:
                arn = self._create_scope_key(scope)
        with self._lock:
            self._scope_arns[scope] = arn
        return arn

    def _find_scope_key(self, scope: str) -> str | None:
        try:
            meta = self._client.describe_key(KeyId=self.alias_of(scope))["KeyMetadata"]
        except ClientError as exc:
            if _code(exc) == "NotFoundException":
                return None
            raise _fail("DescribeKey", exc) from None
        except BotoCoreError as exc:
            raise _fail("DescribeKey", exc) from None
        if meta.get("KeyState") in _GONE_STATES:
            raise _destroyed(scope)  # a destroy_scope was interrupted before DeleteAlias
        return str(meta["Arn"])

    def _create_scope_key(self, scope: str) -> str:
        try:
            meta = self._client.create_key(
                Description=f"LabelVault key-encryption key of scope {scope}",
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
                Tags=[{"TagKey": "labelvault:scope", "TagValue": scope}],
            )["KeyMetadata"]
        except (ClientError, BotoCoreError) as exc:
            raise _fail("CreateKey", exc) from None
        key_id, arn = str(meta["KeyId"]), str(meta["Arn"])
        try:
            self._client.enable_key_rotation(KeyId=key_id)
            self._client.create_alias(AliasName=self.alias_of(scope), TargetKeyId=key_id)
        except (ClientError, BotoCoreError) as exc:
            self._discard_key(key_id)
            if _code(exc) == "AlreadyExistsException":  # another process won the race
                found = self._find_scope_key(scope)
                if found is not None:
                    return found
            raise _fail("CreateAlias", exc) from None
        return arn

    def _discard_key(self, key_id: str) -> None:
        """Best effort: schedule deletion of a key we created but could not use."""
        with contextlib.suppress(ClientError, BotoCoreError):
            self._client.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=self._window)

    def _forget(self, scope: str) -> None:
        with self._lock:
            self._scope_arns.pop(scope, None)

    def _check_usable(self, key_id: str, scope: str) -> None:
        """Refuse a disabled / pending-deletion / deleted key before asking KMS to decrypt."""
        try:
            meta = self._client.describe_key(KeyId=key_id)["KeyMetadata"]
        except (ClientError, BotoCoreError) as exc:
            raise _fail("DescribeKey", exc, scope) from None
        state = meta.get("KeyState")
        if state in _GONE_STATES:
            if scope != CONTROL_SCOPE:
                raise _destroyed(scope)
            raise KeyProviderError("AWS KMS key of the control scope is pending deletion")
        if state == "Disabled":
            raise KeyProviderError(f"AWS KMS key of scope {scope} is disabled")

    def current_kek_id(self, scope: str = CONTROL_SCOPE) -> str:
        """ARN of the KMS key used for new wraps of ``scope`` (created if it has none yet)."""
        return self._scope_arn(scope)

    def use_key(self, key_id: str) -> str:
        """Switch the control scope's new wraps (and rewrap targets) to another KMS key."""
        with self._lock:
            self._key_id, self._arn = key_id, None
        return self._control_arn()

    def rotate_kek(self, scope: str = CONTROL_SCOPE) -> str:
        """Rotate the scope key's material in KMS now (``RotateKeyOnDemand``); ARN unchanged."""
        arn = self._scope_arn(scope)
        try:
            self._client.rotate_key_on_demand(KeyId=arn)
        except (ClientError, BotoCoreError) as exc:
            raise _fail("RotateKeyOnDemand", exc, scope) from None
        return arn

    def wrap(self, plaintext_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        scope = scope_for_wrap(context)
        try:
            out = self._client.encrypt(
                KeyId=self._scope_arn(scope),
                Plaintext=bytes(plaintext_key),
                EncryptionContext=dict(context),
            )
        except (ClientError, BotoCoreError) as exc:
            self._forget(scope)
            raise _fail("Encrypt", exc, scope) from None
        return WrappedKey(self.name, str(out["KeyId"]), bytes(out["CiphertextBlob"]))

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, WrappedKey]:
        """A new 256-bit data key from KMS: (plaintext, wrapped)."""
        scope = scope_for_wrap(context)
        try:
            out = self._client.generate_data_key(
                KeyId=self._scope_arn(scope), KeySpec="AES_256", EncryptionContext=dict(context)
            )
        except (ClientError, BotoCoreError) as exc:
            self._forget(scope)
            raise _fail("GenerateDataKey", exc, scope) from None
        wrapped = WrappedKey(self.name, str(out["KeyId"]), bytes(out["CiphertextBlob"]))
        return bytes(out["Plaintext"]), wrapped

    def _check(self, wrapped: WrappedKey) -> None:
        if wrapped.provider != self.name:
            raise KeyProviderError(f"key was wrapped by provider {wrapped.provider!r}, not aws-kms")

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        self._check(wrapped)
        scope = scope_for_unwrap(context)
        self._check_usable(wrapped.kek_id, scope)
        try:
            out = self._client.decrypt(
                CiphertextBlob=wrapped.wrapped,
                KeyId=wrapped.kek_id,
                EncryptionContext=dict(context),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _fail("Decrypt", exc, scope) from None
        return bytes(out["Plaintext"])

    def rewrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        self._check(wrapped)
        scope = scope_for_unwrap(context)
        self._check_usable(wrapped.kek_id, scope)
        try:
            out = self._client.re_encrypt(
                CiphertextBlob=wrapped.wrapped,
                SourceKeyId=wrapped.kek_id,
                SourceEncryptionContext=dict(context),
                DestinationKeyId=self._scope_arn(scope),
                DestinationEncryptionContext=dict(context),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _fail("ReEncrypt", exc, scope) from None
        return WrappedKey(self.name, str(out["KeyId"]), bytes(out["CiphertextBlob"]))

    def destroy_scope(self, scope: str) -> None:
        """DisableKey, ScheduleKeyDeletion, DeleteAlias of the scope's key; idempotent."""
        refuse_control_destroy(scope)
        alias = self.alias_of(scope)
        self._forget(scope)
        with self._create_lock:
            try:
                meta = self._client.describe_key(KeyId=alias)["KeyMetadata"]
            except ClientError as exc:
                if _code(exc) == "NotFoundException":
                    return  # never created, or already destroyed
                raise _fail("DescribeKey", exc) from None
            except BotoCoreError as exc:
                raise _fail("DescribeKey", exc) from None
            key_id, state = str(meta["KeyId"]), meta.get("KeyState")
            try:
                if state not in _GONE_STATES:
                    if state != "Disabled":
                        self._client.disable_key(KeyId=key_id)
                    self._client.schedule_key_deletion(
                        KeyId=key_id, PendingWindowInDays=self._window
                    )
                self._client.delete_alias(AliasName=alias)
            except (ClientError, BotoCoreError) as exc:
                if _code(exc) != "NotFoundException":
                    raise _fail("destroy scope", exc) from None
        self._forget(scope)

    def __repr__(self) -> str:
        return f"AwsKmsKeyProvider(key_id={self._key_id!r}, alias_prefix={self._prefix!r})"
