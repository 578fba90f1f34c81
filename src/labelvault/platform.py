"""The composition root: builds the running platform from the settings, in one place.

Adapters (API, web, CLI, worker) get a ``Platform`` and call domain services with its parts;
domains never import this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labelvault.crypto import KeyProvider, make_key_provider
from labelvault.db.bootstrap import DatabaseTarget, resolve_database
from labelvault.db.migrate import MigrationReport, migrate
from labelvault.db.runtime import RuntimeDatabase
from labelvault.jobs import JobQueue
from labelvault.keys import ControlSealer, KeyService
from labelvault.settings import Settings
from labelvault.storage import BlobStore, make_blob_store
from labelvault.tenancy.service import credential_loader


def build_key_provider(settings: Settings) -> KeyProvider:
    kind = settings.key_provider
    opts: dict[str, Any]
    if kind == "local":
        if settings.local_kek is not None:
            # the per-project salts that make crypto-shredding possible live in the data dir
            opts = {
                "operator_key": settings.local_kek.get_secret_value(),
                "directory": settings.data_dir / "keys",
            }
        else:
            opts = {"directory": settings.data_dir / "keys"}
    elif kind == "aws-kms":
        opts = {"key_id": settings.kms_key_id, "endpoint_url": settings.kms_endpoint_url}
    else:
        opts = {"url": settings.vault_addr, "key_name": settings.vault_transit_key}
    return make_key_provider(kind, **opts)


def build_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_store == "local":
        return make_blob_store("local", root=settings.data_dir.resolve() / "blobs")
    return make_blob_store(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        bucket_prefix=settings.s3_bucket_prefix,
    )


def prepare_database(
    settings: Settings, *, run_migrations: bool = True, stop_embedded_at_exit: bool = True
) -> tuple[DatabaseTarget, MigrationReport | None]:
    target = resolve_database(settings, stop_embedded_at_exit=stop_embedded_at_exit)
    report = migrate(target.owner_dsn, target.app_password) if run_migrations else None
    return target, report


@dataclass
class Platform:
    settings: Settings
    target: DatabaseTarget
    db: RuntimeDatabase
    keys: KeyService
    sealer: ControlSealer
    blobs: BlobStore
    # background jobs (procrastinate): opened on first use, closed with the platform
    jobs: JobQueue = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.jobs = JobQueue(self.db.app_dsn)

    @classmethod
    def create(cls, settings: Settings, target: DatabaseTarget) -> Platform:
        db = RuntimeDatabase(
            owner_dsn=target.owner_dsn,
            app_password=target.app_password,
            dbname=target.dbname,
            control_pool_max=settings.control_pool_max,
            project_pool_max=settings.project_pool_max,
            project_conn_max=settings.project_pool_conn_max,
        )
        keys = KeyService(db, build_key_provider(settings))
        sealer = ControlSealer(keys)
        db.set_credential_loader(credential_loader(db, sealer))
        return cls(settings, target, db, keys, sealer, build_blob_store(settings))

    async def open(self) -> None:
        await self.db.open()
        await self.sealer.load()

    async def close(self) -> None:
        await self.jobs.close()
        await self.keys.close()
        await self.db.close()
