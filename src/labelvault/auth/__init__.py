"""Pure, database-free authentication building blocks.

- ``passwords``: argon2id hashing and the password policy.
- ``totp``: RFC 6238 codes with a replay guard.
- ``recovery``: single-use MFA recovery codes.
- ``tokens``: API tokens, session secrets, session-bound CSRF tokens.
- ``throttle``: moving-window back-off and lockout decisions.
- ``oidc``: OpenID Connect relying party (code flow, PKCE S256, state, nonce).

A service layer owns storage; nothing here touches a database or the clock except through
explicit ``now`` parameters (which default to the current time).
"""

from labelvault.auth.oidc import (
    OidcError,
    OidcIdentity,
    OidcProviderConfig,
    PendingLogin,
    ProviderMetadata,
    SecretStr,
    begin_login,
    complete_login,
    fetch_jwks,
    fetch_metadata,
    validate_id_token,
)
from labelvault.auth.passwords import (
    check_password_policy,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from labelvault.auth.recovery import (
    generate_recovery_codes,
    hash_recovery_code,
    match_recovery_code,
)
from labelvault.auth.throttle import ThrottleDecision, ThrottlePolicy, decide
from labelvault.auth.tokens import (
    NewSessionSecret,
    NewToken,
    csrf_token_for,
    hash_session_secret,
    new_api_token,
    new_session_secret,
    parse_api_token,
    verify_csrf,
)
from labelvault.auth.totp import new_totp_secret, provisioning_uri, verify_totp

__all__ = [
    "NewSessionSecret",
    "NewToken",
    "OidcError",
    "OidcIdentity",
    "OidcProviderConfig",
    "PendingLogin",
    "ProviderMetadata",
    "SecretStr",
    "ThrottleDecision",
    "ThrottlePolicy",
    "begin_login",
    "check_password_policy",
    "complete_login",
    "csrf_token_for",
    "decide",
    "dummy_verify",
    "fetch_jwks",
    "fetch_metadata",
    "generate_recovery_codes",
    "hash_password",
    "hash_recovery_code",
    "hash_session_secret",
    "match_recovery_code",
    "needs_rehash",
    "new_api_token",
    "new_session_secret",
    "new_totp_secret",
    "parse_api_token",
    "provisioning_uri",
    "validate_id_token",
    "verify_csrf",
    "verify_password",
    "verify_totp",
]
