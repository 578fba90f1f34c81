"""OpenID Connect relying party: authorization code flow with PKCE S256, state and nonce.

Follows OIDC Core 1.0 section 3.1.3.7 and ASVS 5.0 V10. The issuer is pinned per provider
configuration: both the discovery document's ``issuer`` and the ID token's ``iss`` must
equal it exactly. Local identities must be keyed by ``(issuer, subject)``, never by email.

:class:`PendingLogin` holds the state, nonce and PKCE verifier: store it server-side, bound
to the user's session, and delete it *before* calling :func:`complete_login` (single use).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import quote, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from labelvault.kernel.errors import InvalidInputError, UnauthenticatedError

DEFAULT_ALLOWED_ALGS: tuple[str, ...] = ("RS256", "ES256", "PS256")
SUPPORTED_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
DEFAULT_SCOPES: tuple[str, ...] = ("openid", "email", "profile")
MAX_LEEWAY_SECONDS = 60
PENDING_LOGIN_TTL_SECONDS = 10 * 60
HTTP_TIMEOUT_SECONDS = 10.0
MAX_CODE_LENGTH = 4096
MAX_ID_TOKEN_LENGTH = 16_384
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_OAUTH_ERROR_RE = re.compile(r"^[a-z_]{1,64}$")


class OidcError(UnauthenticatedError):
    """The login failed; the message is short and never contains tokens or secrets."""

    code = "oidc_failed"


class SecretStr:
    """A string whose value is hidden from ``repr``/``str`` (logs, tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretStr):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


def _url_ok(url: str) -> bool:
    """https only, except http on loopback (local development and tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


def _check_url(url: str, what: str) -> None:
    if not _url_ok(url):
        raise OidcError(f"{what} must be an https URL")


def _config_error(message: str, field: str) -> InvalidInputError:
    return InvalidInputError(message, field=field)


@dataclass(frozen=True, slots=True)
class OidcProviderConfig:
    issuer: str
    client_id: str
    client_secret: SecretStr = field(repr=False)
    discovery_url: str | None = None
    allowed_algs: tuple[str, ...] = DEFAULT_ALLOWED_ALGS
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    leeway_seconds: int = MAX_LEEWAY_SECONDS

    def __post_init__(self) -> None:
        """Raise ``InvalidInputError`` for an unsafe configuration."""
        parts = urlsplit(self.issuer)
        if not _url_ok(self.issuer) or parts.query or parts.fragment:
            raise _config_error("issuer must be an https URL without query or fragment", "issuer")
        if self.discovery_url is not None and not _url_ok(self.discovery_url):
            raise _config_error("discovery URL must be an https URL", "discovery_url")
        if not self.client_id:
            raise _config_error("client_id is required", "client_id")
        if not self.client_secret.get_secret_value():
            raise _config_error("client_secret is required", "client_secret")
        if not self.allowed_algs:
            raise _config_error("allowed_algs must not be empty", "allowed_algs")
        bad = [alg for alg in self.allowed_algs if alg not in SUPPORTED_ALGS]
        if bad:
            raise _config_error(
                f"unsupported ID token algorithms: {', '.join(sorted(bad))}", "allowed_algs"
            )
        if "openid" not in self.scopes:
            raise _config_error("scopes must include 'openid'", "scopes")
        if not 0 <= self.leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise _config_error(
                f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds", "leeway_seconds"
            )

    @property
    def metadata_url(self) -> str:
        return self.discovery_url or self.issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    id_token_signing_alg_values_supported: tuple[str, ...] = ()
    code_challenge_methods_supported: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """Server-side state of one login attempt. Never put it in a cookie."""

    issuer: str
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    created_at: float


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """A verified identity; key local accounts by ``(issuer, subject)``."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    auth_time: int | None
    amr: tuple[str, ...]


async def _get_json(http: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        response = await http.get(
            url,
            headers={"Accept": "application/json"},
            follow_redirects=False,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise OidcError(f"could not fetch {what}") from exc
    if response.status_code != 200:
        raise OidcError(f"could not fetch {what} (HTTP {response.status_code})")
    return _json_object(response, what)


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError as exc:
        raise OidcError(f"{what} is not valid JSON") from exc
    if not isinstance(document, dict):
        raise OidcError(f"{what} is not a JSON object")
    return document


def _str_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return ()


async def fetch_metadata(config: OidcProviderConfig, http: httpx.AsyncClient) -> ProviderMetadata:
    """Fetch the discovery document; its ``issuer`` must equal ``config.issuer`` exactly."""
    doc = await _get_json(http, config.metadata_url, "provider metadata")
    if doc.get("issuer") != config.issuer:
        raise OidcError("provider metadata issuer does not match the configured issuer")
    endpoints: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise OidcError(f"provider metadata lacks {name}")
        _check_url(value, name)
        endpoints[name] = value
    userinfo = doc.get("userinfo_endpoint")
    methods = _str_tuple(doc.get("code_challenge_methods_supported"))
    if methods and "S256" not in methods:
        raise OidcError("provider does not support PKCE S256")
    return ProviderMetadata(
        issuer=config.issuer,
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        jwks_uri=endpoints["jwks_uri"],
        userinfo_endpoint=userinfo if isinstance(userinfo, str) else None,
        id_token_signing_alg_values_supported=_str_tuple(
            doc.get("id_token_signing_alg_values_supported")
        ),
        code_challenge_methods_supported=methods,
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_challenge(code_verifier: str) -> str:
    """RFC 7636 S256 challenge."""
    return _b64url(hashlib.sha256(code_verifier.encode("ascii")).digest())


def begin_login(
    config: OidcProviderConfig,
    metadata: ProviderMetadata,
    redirect_uri: str,
    *,
    login_hint: str | None = None,
    now: float | None = None,
) -> tuple[str, PendingLogin]:
    """Return the URL to redirect the browser to, and the pending login to store server-side."""
    if metadata.issuer != config.issuer:
        raise OidcError("provider metadata belongs to another issuer")
    _check_url(redirect_uri, "redirect URI")
    pending = PendingLogin(
        issuer=config.issuer,
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(64),  # 86 characters of [A-Za-z0-9_-]
        redirect_uri=redirect_uri,
        created_at=time.time() if now is None else now,
    )
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(config.scopes),
        "state": pending.state,
        "nonce": pending.nonce,
        "code_challenge": pkce_challenge(pending.code_verifier),
        "code_challenge_method": "S256",
    }
    if login_hint:
        params["login_hint"] = login_hint
    endpoint = metadata.authorization_endpoint
    separator = "&" if urlsplit(endpoint).query else "?"
    return endpoint + separator + urlencode(params, quote_via=quote), pending


def _basic_auth(client_id: str, client_secret: str) -> str:
    # RFC 6749 section 2.3.1: form-urlencode both parts before base64.
    raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


async def _redeem_code(
    config: OidcProviderConfig,
    metadata: ProviderMetadata,
    pending: PendingLogin,
    code: str,
    http: httpx.AsyncClient,
) -> str:
    try:
        response = await http.post(
            metadata.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": pending.redirect_uri,
                "code_verifier": pending.code_verifier,
            },
            headers={
                "Accept": "application/json",
                "Authorization": _basic_auth(
                    config.client_id, config.client_secret.get_secret_value()
                ),
            },
            follow_redirects=False,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise OidcError("could not reach the token endpoint") from exc
    if response.status_code != 200:
        reason = f"HTTP {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, str) and _OAUTH_ERROR_RE.match(error):
            reason = error
        raise OidcError(f"token endpoint refused the code ({reason})")
    body = _json_object(response, "token response")
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise OidcError("token response has no ID token")
    return id_token


async def fetch_jwks(metadata: ProviderMetadata, http: httpx.AsyncClient) -> KeySet:
    """Fetch the provider's signing keys (RSA and EC keys meant for signatures)."""
    doc = await _get_json(http, metadata.jwks_uri, "provider keys")
    keys = doc.get("keys")
    if not isinstance(keys, list):
        raise OidcError("provider keys document has no key list")
    usable = [
        key
        for key in keys
        if isinstance(key, dict)
        and key.get("kty") in ("RSA", "EC")
        and key.get("use", "sig") == "sig"
    ]
    try:
        return KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise OidcError("provider keys could not be parsed") from exc


def _decode_header(id_token: str) -> dict[str, Any]:
    parts = id_token.split(".")
    if len(parts) != 3:
        raise OidcError("ID token is malformed")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise OidcError("ID token is malformed") from exc
    if not isinstance(header, dict):
        raise OidcError("ID token is malformed")
    return header


def _is_number(value: object) -> TypeGuard[int | float]:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def validate_id_token(
    config: OidcProviderConfig,
    id_token: str,
    keys: KeySet,
    *,
    nonce: str,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify signature and claims of an ID token (OIDC Core 3.1.3.7); return its claims."""
    if len(id_token) > MAX_ID_TOKEN_LENGTH:
        raise OidcError("ID token is too large")
    header = _decode_header(id_token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in config.allowed_algs:
        raise OidcError("ID token uses a disallowed signing algorithm")
    try:
        token = jwt.decode(id_token, keys, algorithms=list(config.allowed_algs))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise OidcError("ID token signature is invalid") from exc
    claims: dict[str, Any] = dict(token.claims)
    current = time.time() if now is None else now
    leeway = config.leeway_seconds

    if claims.get("iss") != config.issuer:
        raise OidcError("ID token issuer does not match")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise OidcError("ID token has no valid subject")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise OidcError("ID token audience is invalid")
    if config.client_id not in audiences:
        raise OidcError("ID token is not intended for this client")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != config.client_id:
        raise OidcError("ID token authorized party does not match")
    exp = claims.get("exp")
    if not _is_number(exp):
        raise OidcError("ID token has no valid expiry")
    if current >= exp + leeway:
        raise OidcError("ID token has expired")
    iat = claims.get("iat")
    if not _is_number(iat):
        raise OidcError("ID token has no valid issue time")
    if iat > current + leeway:
        raise OidcError("ID token was issued in the future")
    nbf = claims.get("nbf")
    if nbf is not None and (not _is_number(nbf) or nbf > current + leeway):
        raise OidcError("ID token is not yet valid")
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not hmac.compare_digest(
        token_nonce.encode("utf-8"), nonce.encode("utf-8")
    ):
        raise OidcError("ID token nonce does not match")
    return claims


def _identity(config: OidcProviderConfig, claims: Mapping[str, Any]) -> OidcIdentity:
    email = claims.get("email")
    name = claims.get("name")
    auth_time = claims.get("auth_time")
    return OidcIdentity(
        issuer=config.issuer,
        subject=str(claims["sub"]),
        email=email if isinstance(email, str) else None,
        email_verified=claims.get("email_verified") is True,
        name=name if isinstance(name, str) else None,
        auth_time=int(auth_time) if _is_number(auth_time) else None,
        amr=_str_tuple(claims.get("amr")),
    )


def _check_pending(
    config: OidcProviderConfig, pending: PendingLogin, returned_state: str, now: float
) -> None:
    if pending.issuer != config.issuer:
        raise OidcError("login was started with another provider")
    age = now - pending.created_at
    if age > PENDING_LOGIN_TTL_SECONDS or age < -config.leeway_seconds:
        raise OidcError("login attempt has expired; please start again")
    if not isinstance(returned_state, str) or not hmac.compare_digest(
        returned_state.encode("utf-8"), pending.state.encode("utf-8")
    ):
        raise OidcError("state does not match")


async def complete_login(
    config: OidcProviderConfig,
    metadata: ProviderMetadata,
    pending: PendingLogin,
    *,
    returned_state: str,
    code: str,
    http: httpx.AsyncClient,
    returned_iss: str | None = None,
    now: float | None = None,
) -> OidcIdentity:
    """Handle the redirect back from the provider: check state, redeem the code, verify the
    ID token. The caller must already have deleted ``pending`` from its store.

    Pass the callback's ``iss`` query parameter as ``returned_iss`` when present (RFC 9207
    mix-up defence); it must equal the configured issuer.
    """
    current = time.time() if now is None else now
    if metadata.issuer != config.issuer:
        raise OidcError("provider metadata belongs to another issuer")
    _check_pending(config, pending, returned_state, current)
    if returned_iss is not None and returned_iss != config.issuer:
        raise OidcError("authorization response issuer does not match")
    if not isinstance(code, str) or not 0 < len(code) <= MAX_CODE_LENGTH:
        raise OidcError("authorization code is missing or invalid")
    id_token = await _redeem_code(config, metadata, pending, code, http)
    keys = await fetch_jwks(metadata, http)
    claims = validate_id_token(config, id_token, keys, nonce=pending.nonce, now=current)
    return _identity(config, claims)
