"""``labelvault serve``: HTTPS (TLS 1.3 only) with uvicorn, on the embedded default or not."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from labelvault.crypto.tls import ensure_self_signed, server_ssl_context
from labelvault.kernel.errors import InvalidInputError, ServiceUnavailableError
from labelvault.settings import Settings


class PortInUseError(ServiceUnavailableError):
    pass


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(f"port {port} on {host} is already in use") from None
            if exc.errno == errno.EACCES:
                raise PortInUseError(f"not allowed to listen on {host}:{port}") from None
            raise ServiceUnavailableError(
                f"cannot listen on {host}:{port}: {exc.strerror}"
            ) from None


def tls_files(settings: Settings) -> tuple[Path, Path]:
    if settings.tls_cert or settings.tls_key:
        if not (settings.tls_cert and settings.tls_key):
            raise InvalidInputError("give both LABELVAULT_TLS_CERT and LABELVAULT_TLS_KEY")
        for path in (settings.tls_cert, settings.tls_key):
            if not path.is_file():
                raise InvalidInputError(f"TLS file {path} does not exist")
        return settings.tls_cert, settings.tls_key
    return ensure_self_signed(settings.data_dir.resolve() / "tls")


def build_ssl_context(settings: Settings) -> ssl.SSLContext:
    cert, key = tls_files(settings)
    try:
        return server_ssl_context(cert, key)
    except (ssl.SSLError, OSError):
        raise InvalidInputError("the TLS certificate or key cannot be loaded") from None


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop (a dependency: its transports and TLS are native code, which matters
    on a server that is CPU-bound in Python), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def uvicorn_config(
    app: Any, settings: Settings, context: ssl.SSLContext, *, port: int
) -> uvicorn.Config:
    def factory(_config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
        return context

    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        ssl_context_factory=factory,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
