"""The API's routers, in the order they are mounted."""

from labelvault.api.routes.audit import router as audit_router
from labelvault.api.routes.auth import router as auth_router
from labelvault.api.routes.exports import router as exports_router
from labelvault.api.routes.health import router as health_router
from labelvault.api.routes.media import router as media_router
from labelvault.api.routes.orgs import router as orgs_router
from labelvault.api.routes.pipeline import router as pipeline_router
from labelvault.api.routes.projects import router as projects_router
from labelvault.api.routes.reviews import router as reviews_router
from labelvault.api.routes.sso import router as sso_router
from labelvault.api.routes.tokens import router as tokens_router

ROUTERS = [
    health_router,
    auth_router,
    tokens_router,
    orgs_router,
    projects_router,
    sso_router,
    audit_router,
    pipeline_router,
    reviews_router,
    exports_router,
    media_router,
]
