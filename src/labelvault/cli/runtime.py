"""Shared plumbing of the commands: settings, the platform, errors as one clear line."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from pydantic import ValidationError

from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import LabelVaultError
from labelvault.logs import configure_logging, get_logger, redact_text
from labelvault.platform import Platform, prepare_database
from labelvault.settings import Settings, load_settings

T = TypeVar("T")
OPERATOR = Actor.system("cli")
COMMAND_PROJECT_POOLS = 4
log = get_logger(__name__)


def _runtime_dir() -> None:
    # pgserver keeps a lock file in the user's runtime directory; give it a private one
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = os.path.join(tempfile.gettempdir(), f"labelvault-runtime-{os.getuid()}")
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = path


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {redact_text(message)}", file=sys.stderr)
    raise SystemExit(code)


def settings_or_fail(**overrides: Any) -> Settings:
    _runtime_dir()
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        fail(f"invalid setting {where}: {first.get('msg')}")
    except LabelVaultError as exc:
        fail(exc.message)
    configure_logging(settings.log_level)
    return settings


def run(fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(fn())  # type: ignore[arg-type]
    except LabelVaultError as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        fail("interrupted", 130)


async def _seal(platform: Platform) -> None:
    """Chain the audit events this command wrote before it exits: no server knows of the
    projects it wrote to, and its events would wait for the next checkpoint or read."""
    from labelvault.audit.sealer import seal_pending

    try:
        await asyncio.wait_for(seal_pending(platform.db), timeout=10)
    except Exception as exc:  # the command's own outcome stands; a later seal chains them
        log.warning("audit events left for a later seal", error=type(exc).__name__)


def with_platform(
    settings: Settings, fn: Callable[[Platform], Awaitable[T]], *, migrate: bool = True
) -> T:
    try:
        target, _ = prepare_database(settings, run_migrations=migrate)
    except LabelVaultError as exc:
        fail(exc.message)

    # a command works on projects one after another: a few pools, not the server's many (a
    # sweep of every project would otherwise keep a connection open per project it passed)
    settings = settings.model_copy(
        update={"project_pool_max": min(settings.project_pool_max, COMMAND_PROJECT_POOLS)}
    )

    async def go() -> T:
        platform = Platform.create(settings, target)
        await platform.open()
        try:
            return await fn(platform)
        finally:
            await _seal(platform)
            await platform.close()

    return run(go)
