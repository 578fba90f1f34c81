"""The headers of every HTML page: a strict, nonce-based Content-Security-Policy and friends."""

from __future__ import annotations

import secrets

NONCE_BYTES = 18  # 144 bits, fresh for every response


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def page_csp(nonce: str) -> str:
    """Scripts only by nonce (and what they load, 'strict-dynamic'); no plugins, no <base>, no
    framing, DOM sinks locked by Trusted Types (no policy may even be created): pages build the
    DOM with text nodes only. Styles come from our static stylesheet, never inline."""
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}' 'strict-dynamic'; "
        "style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
        "form-action 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "require-trusted-types-for 'script'; trusted-types 'none'"
    )


def page_headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": page_csp(nonce),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), clipboard-read=()",
    }
