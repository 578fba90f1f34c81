"""The durable job queue: procrastinate on the platform's own PostgreSQL, as the runtime role.

Jobs carry ids only (project id, export id, ...), never content: the job table is not a tenant
table and every ``lv_app`` connection can read it. A job's progress lives with the object it
works on (an export's row: state and item count), where row-level security applies.

The queue opens its own small connection pool (``search_path=procrastinate``) on first use;
:meth:`JobQueue.close` is called by ``Platform.close``.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued

from labelvault.jobs.schema import JOB_SCHEMA

NAMESPACE = "lv"
# Every module that registers tasks with ``@job``; imported when a queue first opens.
TASK_MODULES = ("labelvault.export.job",)
F = TypeVar("F", bound=Callable[..., Any])
_REGISTRY: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


def job(name: str, **options: Any) -> Callable[[F], F]:
    """Declare an async function ``fn(context, **ids)`` as the task ``name`` (procrastinate
    task options in ``options``); every queue registers it on its own app."""

    def register(fn: F) -> F:
        _REGISTRY[name] = (fn, options)
        return fn

    return register


def task_name(name: str) -> str:
    """The full name of the task declared as ``name``."""
    return f"{NAMESPACE}:{name}"


class JobQueue:
    def __init__(self, app_dsn: str, *, pool_max: int = 4) -> None:
        self._dsn = app_dsn
        self._pool_max = pool_max
        self._app: App | None = None
        self._lock = asyncio.Lock()

    def _build(self) -> App:
        for module in TASK_MODULES:
            importlib.import_module(module)
        connector = PsycopgConnector(
            conninfo=self._dsn,
            min_size=0,
            max_size=self._pool_max,
            name="jobs",
            timeout=10,
            kwargs={"options": f"-c search_path={JOB_SCHEMA}"},
        )
        app = App(connector=connector)
        for name, (fn, options) in _REGISTRY.items():
            app.task(name=task_name(name), pass_context=True, **options)(fn)
        return app

    async def app(self) -> App:
        """The opened procrastinate app (opened on first use)."""
        if self._app is not None:
            return self._app
        async with self._lock:
            if self._app is None:
                app = self._build()
                await app.open_async()
                self._app = app
        return self._app

    async def defer(
        self,
        name: str,
        *,
        lock: str | None = None,
        queueing_lock: str | None = None,
        queue: str | None = None,
        **args: Any,
    ) -> int | None:
        """Queue task ``name`` with ``args`` (ids only); None when an identical job (same
        ``queueing_lock``) is already waiting."""
        app = await self.app()
        options: dict[str, Any] = {"lock": lock, "queueing_lock": queueing_lock}
        if queue is not None:
            options["queue"] = queue
        deferrer = app.configure_task(task_name(name), **options)
        try:
            job_id: int = await deferrer.defer_async(**args)
        except AlreadyEnqueued:
            return None
        return job_id

    async def close(self) -> None:
        async with self._lock:
            app, self._app = self._app, None
        if app is not None:
            await app.close_async()
