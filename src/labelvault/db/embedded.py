"""The embedded default: a private PostgreSQL in the data directory, through ``pgserver``.

First start initialises the cluster with scram-sha-256 for every connection (the superuser's
password is generated into the data directory's secrets, never printed); later starts reuse it;
after a crash PostgreSQL replays its WAL on the next start. Only a Unix socket inside the data
directory is opened: no TCP listener.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from labelvault.datadir import ensure_dir, ensure_secret
from labelvault.kernel.errors import ServiceUnavailableError

SUPERUSER = "postgres"
_CONF = """
# LabelVault embedded defaults
password_encryption = 'scram-sha-256'
max_connections = 200
shared_buffers = '128MB'
log_min_messages = warning
log_min_error_statement = panic
log_parameter_max_length_on_error = 0
"""
_HBA = """# LabelVault: every role, the superuser included, authenticates with its own password
local   all   all   scram-sha-256
"""


@dataclass(frozen=True)
class EmbeddedPostgres:
    pgdata: Path
    socket_dir: Path
    port: int
    password: str

    def admin_dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            dbname=dbname,
        )


def _system_user() -> str | None:
    return "pgserver" if os.geteuid() == 0 else None


def _initdb(pgdata: Path, password: str) -> None:
    from pgserver import _commands  # the bundled PostgreSQL binaries

    user = _system_user()
    with tempfile.TemporaryDirectory(prefix="lv-initdb-") as tmp:
        pwfile = Path(tmp) / "pw"
        pwfile.write_text(password + "\n", encoding="utf-8")
        pwfile.chmod(0o600)
        if user is not None:
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            entry = ensure_user_exists(user)
            assert entry is not None
            for path in (Path(tmp), pwfile, pgdata):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            ensure_prefix_permissions(pgdata)
            ensure_prefix_permissions(Path(tmp))
        try:
            _commands.initdb(  # type: ignore[attr-defined]
                [
                    "--auth=scram-sha-256",
                    "--encoding=utf8",
                    "--locale=C.UTF-8",
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                ],
                pgdata=pgdata,
                user=user,
            )
        except subprocess.CalledProcessError:
            raise ServiceUnavailableError(
                f"initialising the embedded PostgreSQL in {pgdata} failed; see its output above"
            ) from None
    with (pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(_CONF)
    (pgdata / "pg_hba.conf").write_text(_HBA, encoding="utf-8")


def start_embedded(data_dir: Path, *, stop_at_exit: bool = True) -> EmbeddedPostgres:
    """Start (or attach to) the embedded PostgreSQL of ``data_dir``."""
    import pgserver

    pgdata = data_dir.resolve() / "pg"
    password = ensure_secret(data_dir / "secrets" / "pg-superuser")
    if not (pgdata / "PG_VERSION").exists():
        if pgdata.exists():
            shutil.rmtree(pgdata)  # an interrupted first initialisation: start it over
        ensure_dir(pgdata)
        _initdb(pgdata, password)
    try:
        server = pgserver.get_server(  # type: ignore[attr-defined]
            pgdata, cleanup_mode="stop" if stop_at_exit else None
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError):
        raise ServiceUnavailableError(
            f"the embedded PostgreSQL in {pgdata} did not start; see {pgdata / 'log'}"
        ) from None
    info = server.get_postmaster_info()
    if info.socket_dir is None or info.port is None:
        raise ServiceUnavailableError("the embedded PostgreSQL reported no socket")
    return EmbeddedPostgres(pgdata, Path(info.socket_dir), int(info.port), password)
