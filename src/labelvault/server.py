"""``labelvault serve``: HTTPS (TLS 1.3 only) with uvicorn, on the embedded default or not."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from labelvault.crypto.tls import ensure_self_signed, server_ssl_context
from labelvault.kernel.errors import (
    InvalidInputError,
    LabelVaultError,
    ServiceUnavailableError,
)
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
        # X-Forwarded-For only from the configured proxies (the right-most untrusted hop)
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket every worker process accepts on (bound once, before the workers fork)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServiceUnavailableError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(supervisor: int) -> None:
    """Linux: this worker gets SIGTERM (a graceful stop) when the supervising process dies,
    even by SIGKILL, instead of serving on unsupervised. Elsewhere: nothing."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != supervisor:  # it died before that took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_workers(count: int, serve_one: Callable[[int], None]) -> int:
    """Pre-fork ``count`` worker processes, each running ``serve_one(index)`` (its own event
    loop, database pools and application), and supervise them until they end.

    Call it before this process opens an event loop or a database connection. A
    SIGTERM or SIGINT here (``KeyboardInterrupt``, see ``serve``) is passed on to every worker,
    which shuts down gracefully; if one worker dies, the others are stopped too and the exit
    status is 1. Workers leave with ``os._exit``: the exit hooks of this process (stopping the
    embedded PostgreSQL) run once, here, after the last worker has gone.
    """
    children: set[int] = set()
    status, stopping = 0, False

    def stop_all() -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    supervisor = os.getpid()
    # what is loaded so far is shared copy-on-write: keep the collector from touching it
    gc.freeze()
    try:
        for index in range(count):
            pid = os.fork()
            if pid == 0:  # a worker: whatever happens, it leaves through os._exit
                code = 0
                try:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    _die_with(supervisor)
                    serve_one(index)
                except KeyboardInterrupt:
                    pass
                except BaseException as exc:
                    code = 1
                    # our own errors carry a message meant for the operator; anything else
                    # only its type (a traceback could hold values)
                    why = exc.message if isinstance(exc, LabelVaultError) else type(exc).__name__
                    with contextlib.suppress(BaseException):
                        print(f"server process {index} failed: {why}", file=sys.stderr)
                finally:
                    try:
                        with contextlib.suppress(BaseException):
                            sys.stdout.flush()
                            sys.stderr.flush()
                    finally:
                        os._exit(code)
            children.add(pid)
    except KeyboardInterrupt:  # stopped while still starting: stop those already running
        stopping = True
        stop_all()

    while children:
        try:
            pid, _ = os.wait()
        except KeyboardInterrupt:
            stopping = True
            stop_all()
            continue
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping:  # a worker ended on its own: stop the rest, report the failure
            stopping, status = True, 1
            stop_all()
    return status
