"""The JSON API under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``) and ``/healthz``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from labelvault import __version__
from labelvault.api.middleware import SecurityHeadersMiddleware
from labelvault.api.problems import install_problem_handlers
from labelvault.api.routes import ROUTERS
from labelvault.api.security import ACCESS_ATTR, RouteDeclarationError
from labelvault.audit.checkpointer import run_periodically
from labelvault.audit.sealer import run_sealer
from labelvault.export.expiry import run_sweeper
from labelvault.jobs.worker import WorkerOptions, run_worker
from labelvault.platform import Platform
from labelvault.retention.orphans import run_reconciler
from labelvault.web import install_web


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, including those of included routers (however FastAPI nests them)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None) or getattr(route, "app", None)
        if nested is not None and hasattr(nested, "routes") and nested is not route:
            yield from api_routes(nested.routes)


def check_route_declarations(app: FastAPI) -> None:
    """Every route must declare the permission it needs; refuse to start otherwise."""
    routes = list(api_routes(app.router.routes))
    if not routes:
        raise RouteDeclarationError("no API routes found: cannot check their declarations")
    missing = [
        f"{sorted(r.methods or ())} {r.path}"
        for r in routes
        if not hasattr(r.endpoint, ACCESS_ATTR)
    ]
    if missing:
        raise RouteDeclarationError(
            "routes without a permission declaration: " + ", ".join(missing)
        )


def create_app(
    platform: Platform, *, manage_lifecycle: bool = True, primary: bool = True
) -> FastAPI:
    """The application. Every server process seals the audit events it appended; only the
    ``primary`` one (the only one, unless ``serve`` runs several workers) signs checkpoints,
    sweeps expired export bundles, deletes orphaned blobs and runs the in-process job worker."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not manage_lifecycle:
            yield
            return
        await platform.open()
        stop = asyncio.Event()
        background = [
            asyncio.create_task(run_sealer(platform.db, stop), name="audit-sealer"),
        ]
        if primary:
            background.append(
                asyncio.create_task(run_periodically(platform, stop), name="checkpoints")
            )
            background.append(
                asyncio.create_task(run_sweeper(platform, stop), name="export-sweeper")
            )
            background.append(
                asyncio.create_task(run_reconciler(platform, stop), name="blob-reconciler")
            )
        if primary and platform.target.embedded is not None:  # one command does all
            # the standard queue only: dedicated queues belong to dedicated workers
            jobs = run_worker(platform, stop, WorkerOptions(queues=("default",)))
            background.append(asyncio.create_task(jobs, name="jobs"))
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            await platform.close()

    app = FastAPI(
        title="LabelVault API",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.platform = platform
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_web(app)  # pages, static files, 401 on a page → /login
    check_route_declarations(app)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
