"""The SDK never sends a token in cleartext off this machine; token role caps are strict."""

from __future__ import annotations

import pytest

from labelvault.auth import new_api_token
from labelvault.client import Client, CredentialsError
from labelvault.identity.tokens import token_allows


@pytest.mark.parametrize(
    "url",
    ["http://lv.example", "http://10.0.0.5:8443", "ftp://lv.example", "https://", "lv.example"],
)
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    with pytest.raises(CredentialsError, match="https"):
        Client(url, new_api_token().plaintext)


@pytest.mark.parametrize(
    "url", ["https://lv.example:8443", "http://127.0.0.1:8443", "http://localhost:1"]
)
def test_https_anywhere_and_http_on_loopback_are_accepted(url: str) -> None:
    with Client(url, new_api_token().plaintext) as client:
        assert client.url.startswith(url.split(":")[0])


def test_a_token_capped_below_manager_never_acts_as_one() -> None:
    assert not token_allows("data_owner", "manager")
    assert token_allows("manager", "data_owner")
    assert token_allows("data_owner", "data_owner")
    assert not token_allows("reviewer", "data_owner")
