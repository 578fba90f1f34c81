"""What ``Client`` and ``AsyncClient`` share: configuration, TLS, the token, error mapping."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx

from labelvault.client.credentials import URL_ENV, BearerAuth, CredentialsError, resolve_token
from labelvault.client.errors import error_from_response
from labelvault.client.ops import Call

Verify = str | bool | ssl.SSLContext
USER_AGENT = "labelvault-client/1"


def ssl_context(verify: Verify) -> ssl.SSLContext | bool:
    """``True`` (system CAs), ``False`` (no verification: tests only), a CA file path, or a
    ready ``SSLContext``."""
    if isinstance(verify, ssl.SSLContext | bool):
        return verify
    path = Path(verify)
    if not path.is_file():
        raise CredentialsError(f"CA file {path} does not exist")
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError):
        raise CredentialsError(f"CA file {path} cannot be loaded") from None


class _Base:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        token_file: str | os.PathLike[str] | None = None,
        verify: Verify = True,
        timeout: float = 30,
    ) -> None:
        base = url or os.environ.get(URL_ENV)
        if not base:
            raise CredentialsError(f"no server URL: pass url=... or set {URL_ENV}")
        parsed = httpx.URL(base.rstrip("/"))
        loopback = parsed.host in ("127.0.0.1", "::1", "localhost")
        if not parsed.host or not (
            parsed.scheme == "https" or (parsed.scheme == "http" and loopback)
        ):
            # the token would travel in cleartext: plain http only to this machine
            raise CredentialsError("the server URL must be https://host[:port]")
        self.url = str(parsed)
        self.timeout = timeout
        self._auth = BearerAuth(resolve_token(token, token_file=token_file), parsed)
        self._verify = ssl_context(verify)

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.url,
            "auth": self._auth,
            "verify": self._verify,
            "timeout": httpx.Timeout(self.timeout),
            "headers": {"user-agent": USER_AGENT, "accept": "application/json"},
            "follow_redirects": False,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    __str__ = __repr__


def raise_for_problem(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise error_from_response(response)


def upload_headers(call: Call) -> dict[str, str]:
    headers = dict(call.headers)
    if call.upload is not None:
        headers["content-length"] = str(call.upload.size)
    return headers


def part_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.part")
