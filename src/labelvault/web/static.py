"""Static assets (our own ES modules and stylesheet), served from the package by a fixed
allow-list: a name is either one of these files or not found, so no path ever reaches the
filesystem. A versioned URL (``?v=<content hash>``) is cached for a year; others revalidate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

CSS: Final = "text/css; charset=utf-8"
JS: Final = "text/javascript; charset=utf-8"
ALLOWED: Final[dict[str, str]] = {
    "app.css": CSS,
    "common.js": JS,
    "offsets.js": JS,
    "editor.js": JS,
    "login.js": JS,
    "annotate.js": JS,
    "review.js": JS,
    "dashboard.js": JS,
    "exports.js": JS,
    "data.js": JS,
    "account.js": JS,
    "admin.js": JS,
    "audit.js": JS,
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str


@cache
def asset(name: str) -> Asset | None:
    content_type = ALLOWED.get(name)
    if content_type is None:
        return None
    body = resources.files("labelvault.web").joinpath("static", name).read_bytes()
    return Asset(body, content_type, hashlib.sha256(body).hexdigest()[:16])


def asset_url(name: str) -> str:
    found = asset(name)
    if found is None:
        raise LookupError(f"no static asset {name!r}")
    return f"/static/{name}?v={found.version}"
