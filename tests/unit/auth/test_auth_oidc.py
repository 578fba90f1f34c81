"""The OIDC relying party against a real provider over HTTP (tests/support/oidc_provider.py)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.support.oidc_provider import DEFAULT_REDIRECT_URI, OidcTestProvider, run_oidc_provider

from labelvault.auth.oidc import (
    OidcError,
    OidcIdentity,
    OidcProviderConfig,
    PendingLogin,
    ProviderMetadata,
    SecretStr,
    begin_login,
    complete_login,
    fetch_metadata,
    pkce_challenge,
)
from labelvault.kernel.errors import InvalidInputError

USER_SUB = "user-0001"


@pytest.fixture(scope="module")
def provider_server() -> Iterator[OidcTestProvider]:
    with run_oidc_provider() as provider:
        provider.add_user(USER_SUB, "ada@example.com", "Ada Lovelace")
        yield provider


@pytest.fixture
def provider(provider_server: OidcTestProvider) -> Iterator[OidcTestProvider]:
    provider_server.reset_knobs()
    yield provider_server
    provider_server.reset_knobs()


@pytest.fixture
def config(provider: OidcTestProvider) -> OidcProviderConfig:
    return OidcProviderConfig(
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret=SecretStr(provider.client_secret),
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def _authorize(
    config: OidcProviderConfig, http: httpx.AsyncClient
) -> tuple[ProviderMetadata, PendingLogin, str, str]:
    """Start a login and follow the provider's /authorize redirect; return code and state."""
    metadata = await fetch_metadata(config, http)
    url, pending = begin_login(config, metadata, DEFAULT_REDIRECT_URI, login_hint=USER_SUB)
    response = await http.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == DEFAULT_REDIRECT_URI
    query = parse_qs(location.query)
    return metadata, pending, query["code"][0], query["state"][0]


async def _login(config: OidcProviderConfig, http: httpx.AsyncClient) -> OidcIdentity:
    metadata, pending, code, state, iss = await _authorize_with_iss(config, http)
    return await complete_login(
        config, metadata, pending, returned_state=state, code=code, http=http, returned_iss=iss
    )


async def _authorize_with_iss(
    config: OidcProviderConfig, http: httpx.AsyncClient
) -> tuple[ProviderMetadata, PendingLogin, str, str, str]:
    metadata = await fetch_metadata(config, http)
    url, pending = begin_login(config, metadata, DEFAULT_REDIRECT_URI, login_hint=USER_SUB)
    response = await http.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return metadata, pending, query["code"][0], query["state"][0], query["iss"][0]


async def test_full_flow(config: OidcProviderConfig, http: httpx.AsyncClient) -> None:
    metadata = await fetch_metadata(config, http)
    assert metadata.issuer == config.issuer
    url, pending = begin_login(config, metadata, DEFAULT_REDIRECT_URI, login_hint=USER_SUB)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [pkce_challenge(pending.code_verifier)]
    assert 43 <= len(pending.code_verifier) <= 128
    assert query["state"] == [pending.state] and query["nonce"] == [pending.nonce]
    assert pending.code_verifier not in repr(pending) and pending.nonce not in repr(pending)

    identity = await _login(config, http)
    assert (identity.issuer, identity.subject) == (config.issuer, USER_SUB)
    assert identity.email == "ada@example.com" and identity.email_verified
    assert identity.name == "Ada Lovelace"
    assert identity.amr == ("pwd",)
    assert identity.auth_time is not None


async def test_secret_hidden_from_repr(config: OidcProviderConfig) -> None:
    secret = config.client_secret.get_secret_value()
    assert secret not in repr(config) and secret not in str(config.client_secret)


async def test_discovery_issuer_mismatch(
    provider: OidcTestProvider, config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    provider.discovery_issuer_override = provider.issuer + "/"
    with pytest.raises(OidcError, match="metadata issuer does not match"):
        await fetch_metadata(config, http)


@pytest.mark.parametrize(
    ("knob", "value", "reason"),
    [
        ("wrong_issuer", True, "issuer does not match"),
        ("wrong_audience", True, "not intended for this client"),
        ("expired", True, "expired"),
        ("bad_signature", True, "signature is invalid"),
        ("alg_none", True, "disallowed signing algorithm"),
        ("nonce_override", "some-other-nonce", "nonce does not match"),
    ],
)
async def test_bad_id_tokens_rejected(
    provider: OidcTestProvider,
    config: OidcProviderConfig,
    http: httpx.AsyncClient,
    knob: str,
    value: object,
    reason: str,
) -> None:
    setattr(provider, knob, value)
    with pytest.raises(OidcError, match=reason) as info:
        await _login(config, http)
    assert provider.client_secret not in str(info.value)


async def test_multiple_audiences_require_azp(
    provider: OidcTestProvider, config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    provider.extra_audience = "another-client"
    identity = await _login(config, http)  # azp == client_id
    assert identity.subject == USER_SUB
    provider.omit_azp = True
    with pytest.raises(OidcError, match="authorized party"):
        await _login(config, http)


async def test_forged_state_rejected_before_redeeming(
    provider: OidcTestProvider, config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    metadata, pending, code, _state = await _authorize(config, http)
    before = provider.token_requests
    with pytest.raises(OidcError, match="state does not match"):
        await complete_login(
            config, metadata, pending, returned_state="forged", code=code, http=http
        )
    assert provider.token_requests == before


async def test_second_use_of_pending_login_rejected(
    config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    metadata, pending, code, state = await _authorize(config, http)
    await complete_login(config, metadata, pending, returned_state=state, code=code, http=http)
    with pytest.raises(OidcError, match="invalid_grant"):
        await complete_login(config, metadata, pending, returned_state=state, code=code, http=http)


async def test_code_from_another_login_fails_nonce_or_pkce(
    config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    # A code injected into another user's login: the PKCE verifier does not match.
    metadata, _victim, stolen_code, _ = await _authorize(config, http)
    _, attacker_pending, _, attacker_state = await _authorize(config, http)
    with pytest.raises(OidcError, match="invalid_grant"):
        await complete_login(
            config,
            metadata,
            attacker_pending,
            returned_state=attacker_state,
            code=stolen_code,
            http=http,
        )


async def test_wrong_pkce_verifier_refused_by_token_endpoint(
    config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    metadata, pending, code, state = await _authorize(config, http)
    wrong = dataclasses.replace(pending, code_verifier="x" * 64)
    with pytest.raises(OidcError, match="invalid_grant"):
        await complete_login(config, metadata, wrong, returned_state=state, code=code, http=http)


async def test_token_endpoint_requires_pkce_verifier(
    provider: OidcTestProvider, config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    metadata, _pending, code, _ = await _authorize(config, http)
    response = await http.post(
        metadata.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": DEFAULT_REDIRECT_URI,
        },
        auth=(provider.client_id, provider.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_authorize_rejects_missing_or_plain_pkce(
    provider: OidcTestProvider, config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    metadata = await fetch_metadata(config, http)
    url, _ = begin_login(config, metadata, DEFAULT_REDIRECT_URI, login_hint=USER_SUB)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    plain = {**query, "code_challenge_method": "plain"}
    missing = {k: v for k, v in query.items() if not k.startswith("code_challenge")}
    for params in (plain, missing):
        response = await http.get(metadata.authorization_endpoint, params=params)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


async def test_wrong_client_secret_refused(
    provider: OidcTestProvider, config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    metadata, pending, code, state = await _authorize(config, http)
    bad_config = dataclasses.replace(config, client_secret=SecretStr("wrong"))
    with pytest.raises(OidcError, match="invalid_client"):
        await complete_login(
            bad_config, metadata, pending, returned_state=state, code=code, http=http
        )


async def test_expired_pending_login(config: OidcProviderConfig, http: httpx.AsyncClient) -> None:
    metadata, pending, code, state = await _authorize(config, http)
    with pytest.raises(OidcError, match="expired"):
        await complete_login(
            config,
            metadata,
            pending,
            returned_state=state,
            code=code,
            http=http,
            now=time.time() + 601,
        )


async def test_pending_login_from_another_issuer(
    config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    metadata, pending, code, state = await _authorize(config, http)
    other = dataclasses.replace(pending, issuer="https://idp.example")
    with pytest.raises(OidcError, match="another provider"):
        await complete_login(config, metadata, other, returned_state=state, code=code, http=http)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"allowed_algs": ("RS256", "none")}, "unsupported"),
        ({"allowed_algs": ("HS256",)}, "unsupported"),
        ({"issuer": "http://idp.example"}, "https"),
        ({"scopes": ("email",)}, "openid"),
        ({"leeway_seconds": 300}, "leeway"),
        ({"client_secret": SecretStr("")}, "client_secret"),
    ],
)
def test_config_validation(changes: dict[str, object], reason: str) -> None:
    base: dict[str, object] = {
        "issuer": "https://idp.example",
        "client_id": "c",
        "client_secret": SecretStr("s"),
    }
    with pytest.raises(InvalidInputError, match=reason):
        OidcProviderConfig(**{**base, **changes})  # type: ignore[arg-type]


async def test_mixed_up_authorization_response_issuer(
    config: OidcProviderConfig, http: httpx.AsyncClient
) -> None:
    metadata, pending, code, state = await _authorize(config, http)
    with pytest.raises(OidcError, match="response issuer"):
        await complete_login(
            config,
            metadata,
            pending,
            returned_state=state,
            code=code,
            http=http,
            returned_iss="https://idp.example",
        )
