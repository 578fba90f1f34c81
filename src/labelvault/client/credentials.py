"""Where the SDK finds its API token, and the wrapper that keeps it out of every repr."""

from __future__ import annotations

import os
import stat
from collections.abc import Generator, Mapping
from pathlib import Path

import httpx

from labelvault.client.errors import LabelVaultClientError

TOKEN_ENV = "LABELVAULT_TOKEN"  # noqa: S105 - the variable's name, not a token
TOKEN_FILE_ENV = "LABELVAULT_TOKEN_FILE"  # noqa: S105
URL_ENV = "LABELVAULT_URL"


class CredentialsError(LabelVaultClientError):
    """No usable token (missing, unreadable, or in a file others can read)."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, "credentials", detail)


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token stored in ``path``; refuses a file any other user can read."""
    p = Path(path)
    try:
        info = p.stat()
    except OSError as exc:
        raise CredentialsError(f"cannot read token file {p}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CredentialsError(f"token file {p} is not a regular file")
    if info.st_mode & stat.S_IROTH:
        raise CredentialsError(f"token file {p} is readable by every user; run: chmod 600 {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise CredentialsError(f"cannot read token file {p}") from None
    token = text.strip()
    if not token:
        raise CredentialsError(f"token file {p} is empty")
    return token


def resolve_token(
    token: str | None = None,
    *,
    token_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The token: the argument, else ``token_file``, else ``LABELVAULT_TOKEN``, else the file
    named by ``LABELVAULT_TOKEN_FILE``."""
    env = os.environ if environ is None else environ
    if token:
        return token
    if token_file:
        return read_token_file(token_file)
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    if env.get(TOKEN_FILE_ENV):
        return read_token_file(env[TOKEN_FILE_ENV])
    raise CredentialsError(f"no API token: pass token=..., or set {TOKEN_ENV} or {TOKEN_FILE_ENV}")


class BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer`` to requests for the API's own origin only."""

    def __init__(self, token: str, origin: httpx.URL) -> None:
        self.__token = token
        self._origin = (origin.scheme, origin.host, origin.port)

    def __repr__(self) -> str:
        return "BearerAuth(<hidden>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url = request.url
        if (url.scheme, url.host, url.port) == self._origin:
            request.headers["Authorization"] = f"Bearer {self.__token}"
        yield request
