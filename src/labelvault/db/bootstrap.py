"""Find (or start) the database a command should use, from the settings.

Embedded default: start the private PostgreSQL in the data directory and create the
``labelvault`` database in it. External: use ``LABELVAULT_DATABASE_URL`` as the owner/admin DSN.
The runtime role's password comes from ``LABELVAULT_APP_DB_PASSWORD`` or is generated once into
the data directory's secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from labelvault.datadir import ensure_data_dir, ensure_secret
from labelvault.db.dsn import parse_dsn
from labelvault.db.embedded import EmbeddedPostgres, start_embedded
from labelvault.kernel.errors import ServiceUnavailableError
from labelvault.logs import redact_text
from labelvault.settings import Settings


@dataclass(frozen=True)
class DatabaseTarget:
    owner_dsn: str
    app_password: str
    dbname: str | None
    embedded: EmbeddedPostgres | None

    def __repr__(self) -> str:
        return f"DatabaseTarget(dbname={self.dbname!r}, embedded={self.embedded is not None})"


def _connect_error(exc: Exception) -> ServiceUnavailableError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ServiceUnavailableError(f"cannot connect to the database: {redact_text(first)}")


def _ensure_database(pg: EmbeddedPostgres, dbname: str) -> None:
    try:
        with psycopg.connect(pg.admin_dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [dbname]
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except psycopg.OperationalError as exc:
        raise _connect_error(exc) from None


def resolve_database(settings: Settings, *, stop_embedded_at_exit: bool = True) -> DatabaseTarget:
    data_dir = ensure_data_dir(settings.data_dir)
    if settings.database_url is None:
        pg = start_embedded(data_dir, stop_at_exit=stop_embedded_at_exit)
        _ensure_database(pg, settings.database_name)
        owner_dsn = pg.admin_dsn(settings.database_name)
        app_password = ensure_secret(settings.secrets_dir / "app-db-password")
        return DatabaseTarget(owner_dsn, app_password, settings.database_name, pg)
    owner_dsn = settings.database_url.get_secret_value()
    parse_dsn(owner_dsn)
    try:
        with psycopg.connect(owner_dsn, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        raise _connect_error(exc) from None
    if settings.app_db_password is not None:
        app_password = settings.app_db_password.get_secret_value()
    else:
        app_password = ensure_secret(settings.secrets_dir / "app-db-password")
    return DatabaseTarget(owner_dsn, app_password, None, None)
