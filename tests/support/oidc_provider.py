"""A real, small OpenID Connect provider for tests, served over HTTP on 127.0.0.1.

Use ``with run_oidc_provider() as provider:``; then ``provider.issuer``, ``provider.client_id``,
``provider.client_secret`` and ``provider.add_user(sub, email, name)``. ``/authorize`` logs in
the user named by ``login_hint`` at once and redirects (302) to the redirect URI with code and
state. Set the knobs (``wrong_issuer``, ``wrong_audience``, ``expired``, ``bad_signature``,
``alg_none``, ``nonce_override``, ``discovery_issuer_override``, ``extra_audience``) to make it
misbehave on purpose; ``reset_knobs()`` restores good behaviour.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

DEFAULT_REDIRECT_URI = "https://labelvault.test/auth/oidc/callback"


@dataclass
class _User:
    sub: str
    email: str
    name: str


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    sub: str
    used: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _error(status: int, error: str, description: str = "") -> JSONResponse:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


class OidcTestProvider:
    def __init__(self, redirect_uris: tuple[str, ...] = (DEFAULT_REDIRECT_URI,)) -> None:
        self.client_id = "labelvault-test-client"
        self.client_secret = secrets.token_urlsafe(24) + "/+:%"  # exercises form-encoding
        self.redirect_uris = set(redirect_uris)
        self.signing_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"})
        self.issuer = ""  # set once the port is known
        self.users: dict[str, _User] = {}
        self.grants: dict[str, _Grant] = {}
        self.token_requests = 0
        self.reset_knobs()
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
            ]
        )

    def reset_knobs(self) -> None:
        self.wrong_issuer = False
        self.wrong_audience = False
        self.extra_audience: str | None = None
        self.omit_azp = False
        self.expired = False
        self.bad_signature = False
        self.alg_none = False
        self.nonce_override: str | None = None
        self.discovery_issuer_override: str | None = None

    def add_user(self, sub: str, email: str, name: str) -> None:
        self.users[sub] = _User(sub=sub, email=email, name=name)

    # -- endpoints -------------------------------------------------------------------------

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.discovery_issuer_override or self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        public = self.signing_key.as_dict(private=False)
        public["use"] = "sig"
        public["alg"] = "RS256"
        return JSONResponse({"keys": [public]})

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id:
            return _error(400, "unauthorized_client")
        redirect_uri = q.get("redirect_uri", "")
        if redirect_uri not in self.redirect_uris:
            return _error(400, "invalid_request", "unregistered redirect_uri")
        if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split():
            return _error(400, "invalid_request", "code flow with openid scope only")
        challenge = q.get("code_challenge", "")
        if q.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
            return _error(400, "invalid_request", "PKCE with S256 is required")
        nonce = q.get("nonce", "")
        if not nonce:
            return _error(400, "invalid_request", "nonce is required")
        user = self.users.get(q.get("login_hint", ""))
        if user is None:
            return _error(400, "access_denied", "unknown test user")
        code = secrets.token_urlsafe(32)
        self.grants[code] = _Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            code_challenge=challenge,
            nonce=nonce,
            sub=user.sub,
        )
        params = {"code": code, "state": q.get("state", ""), "iss": self.issuer}
        return RedirectResponse(f"{redirect_uri}?{urlencode(params)}", status_code=302)

    def _client_authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:
            return False
        client_id, sep, secret = decoded.partition(":")
        return bool(sep) and (
            unquote(client_id) == self.client_id
            and hmac.compare_digest(unquote(secret).encode(), self.client_secret.encode())
        )

    async def _token(self, request: Request) -> Response:
        self.token_requests += 1
        if not self._client_authenticated(request):
            return _error(401, "invalid_client")
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        if values.get("grant_type") != "authorization_code":
            return _error(400, "unsupported_grant_type")
        grant = self.grants.get(values.get("code", ""))
        if grant is None or grant.used:
            return _error(400, "invalid_grant", "unknown or used code")
        grant.used = True  # single use, even if the rest of the request fails
        if grant.client_id != self.client_id or values.get("redirect_uri") != grant.redirect_uri:
            return _error(400, "invalid_grant", "redirect_uri mismatch")
        verifier = values.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128:
            return _error(400, "invalid_grant", "code_verifier missing")
        expected = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
        if not hmac.compare_digest(expected, grant.code_challenge):
            return _error(400, "invalid_grant", "PKCE verification failed")
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(32),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.make_id_token(grant),
            },
            headers={"Cache-Control": "no-store"},
        )

    # -- ID tokens -------------------------------------------------------------------------

    def id_token_claims(self, grant: _Grant) -> dict[str, Any]:
        user = self.users[grant.sub]
        now = int(time.time())
        aud: str | list[str] = "someone-else" if self.wrong_audience else self.client_id
        claims: dict[str, Any] = {
            "iss": "https://evil.example" if self.wrong_issuer else self.issuer,
            "sub": user.sub,
            "aud": aud,
            "exp": now - 3600 if self.expired else now + 300,
            "iat": now - 3900 if self.expired else now,
            "auth_time": now,
            "nonce": self.nonce_override if self.nonce_override is not None else grant.nonce,
            "email": user.email,
            "email_verified": True,
            "name": user.name,
            "amr": ["pwd"],
        }
        if self.extra_audience:
            claims["aud"] = [aud, self.extra_audience]
            if not self.omit_azp:
                claims["azp"] = self.client_id
        return claims

    def make_id_token(self, grant: _Grant) -> str:
        claims = self.id_token_claims(grant)
        if self.alg_none:
            header = {"alg": "none", "typ": "JWT"}
            return ".".join(
                [
                    _b64url(json.dumps(header).encode()),
                    _b64url(json.dumps(claims).encode()),
                    "",
                ]
            )
        key = self.other_key if self.bad_signature else self.signing_key
        return jwt.encode({"alg": "RS256", "kid": "test-key-1", "typ": "JWT"}, claims, key)


@contextmanager
def run_oidc_provider(
    redirect_uris: tuple[str, ...] = (DEFAULT_REDIRECT_URI,),
) -> Iterator[OidcTestProvider]:
    """Serve a fresh provider on a free port of 127.0.0.1 for the duration of the block."""
    provider = OidcTestProvider(redirect_uris)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    provider.issuer = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(
        provider.app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="oidc-test-provider", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test OIDC provider did not start")
        time.sleep(0.01)
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
