"""Connection strings: derive the runtime and per-project DSNs from the owner DSN, and redact."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from labelvault.kernel.errors import InvalidInputError

_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}


def parse_dsn(dsn: str) -> dict[str, Any]:
    try:
        return dict(conninfo_to_dict(dsn))
    except Exception:
        # the parser's message may echo the DSN, password included
        raise InvalidInputError("the database URL is malformed", field="database_url") from None


def is_local(params: dict[str, Any]) -> bool:
    host = str(params.get("host") or "")
    return all(h.startswith("/") or h in _LOCAL_HOSTS for h in host.split(","))


def derive_dsn(owner_dsn: str, *, user: str, password: str, dbname: str | None = None) -> str:
    """A DSN to the same server as ``owner_dsn`` as another role.

    Off the local host the connection must verify the server's certificate (DESIGN invariant 6):
    a weaker ``sslmode`` on the owner DSN is upgraded to ``verify-full``.
    """
    params = parse_dsn(owner_dsn)
    params.pop("password", None)
    params["user"] = user
    params["password"] = password
    if dbname:
        params["dbname"] = dbname
    if not is_local(params) and params.get("sslmode") != "verify-full":
        params["sslmode"] = "verify-full"
    params.setdefault("application_name", "labelvault")
    return make_conninfo(**params)


def redact_dsn(dsn: str) -> str:
    try:
        params = parse_dsn(dsn)
    except InvalidInputError:
        return "<unparseable dsn>"
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - a mask, not a password
    return make_conninfo(**params)
