"""One typed settings class, read from the environment (``LABELVAULT_*``) at entry points only.

Secrets are ``SecretStr``: they never appear in ``repr``, logs or error messages. Every secret may
also be given as a file (``LABELVAULT_<NAME>_FILE``), which is how container secrets and vault
agents deliver them.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from labelvault.kernel.errors import InvalidInputError

_SECRET_FIELDS = ("database_url", "app_db_password", "local_kek", "audit_signing_key")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABELVAULT_", extra="ignore", frozen=True)

    data_dir: Path = Path("./.labelvault")
    # An owner/admin DSN of an existing PostgreSQL (15 or 16). Unset: the embedded default.
    database_url: SecretStr | None = None
    # Password of the runtime role on an external database; generated and kept in the data
    # directory's secrets when unset.
    app_db_password: SecretStr | None = None
    database_name: str = "labelvault"

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_url: str | None = None
    region: str = "local"

    key_provider: Literal["local", "aws-kms", "vault-transit"] = "local"
    local_kek: SecretStr | None = None  # base64 of 32 bytes; else a keyring file in data_dir
    kms_key_id: str | None = None
    kms_endpoint_url: str | None = None
    vault_addr: str | None = None
    vault_transit_key: str = "labelvault"
    blob_store: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_bucket_prefix: str = "labelvault-"
    audit_signing_key: SecretStr | None = None
    audit_checkpoint_dir: Path | None = None
    audit_checkpoint_interval_s: int = Field(default=300, ge=5, le=900)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    project_pool_max: int = Field(default=64, ge=1, le=10_000)
    project_pool_conn_max: int = Field(default=4, ge=1, le=100)
    control_pool_max: int = Field(default=10, ge=1, le=200)
    # server processes accepting on one socket (a Python process uses one core)
    workers: int = Field(default=1, ge=1, le=64)
    # the load balancers / reverse proxies in front (addresses or networks, comma-separated):
    # only from them is X-Forwarded-For believed, so audit events and throttles see the client
    trusted_proxies: str = ""
    session_idle_minutes: int = Field(default=30, ge=1)
    session_absolute_hours: int = Field(default=12, ge=1)
    # how long a built export bundle waits for its download; then it expires and is deleted
    export_retention_hours: int = Field(default=72, ge=1, le=24 * 30)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in _SECRET_FIELDS:
            path = os.environ.get(f"LABELVAULT_{name.upper()}_FILE")
            if path and not data.get(name):
                data[name] = _read_secret_file(Path(path), name)
        return data

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        entries = [e.strip() for e in value.split(",") if e.strip()]
        for entry in entries:
            if entry == "*":  # anyone could then claim any address
                raise ValueError("trusted_proxies must name the proxies, not '*'")
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or network"
                ) from None
        return ",".join(entries)

    @field_validator("database_name")
    @classmethod
    def _safe_database_name(cls, value: str) -> str:
        if not value.replace("_", "").isalnum() or not value[0].isalpha() or len(value) > 63:
            raise ValueError("database_name must be a simple identifier")
        return value

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"


def _read_secret_file(path: Path, name: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read the file given for {name}: {exc.strerror}", field=name
        ) from None
    return text.rstrip("\r\n")


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
