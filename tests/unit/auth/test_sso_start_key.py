"""The key SSO starts are counted under: per organization, per source (IPv6 per /64)."""

from __future__ import annotations

import uuid

from labelvault.identity.throttling import sso_start_key


def test_sources_count_per_organization_and_ipv6_per_64() -> None:
    org, other = uuid.uuid4(), uuid.uuid4()
    assert sso_start_key(org, "192.0.2.7") != sso_start_key(other, "192.0.2.7")
    assert sso_start_key(org, "192.0.2.7") != sso_start_key(org, "192.0.2.8")
    # one subscriber's /64 is one source, however many addresses it rotates through
    assert sso_start_key(org, "2001:db8:1:2::1") == sso_start_key(org, "2001:db8:1:2:ffff::9")
    assert sso_start_key(org, "2001:db8:1:2::1") != sso_start_key(org, "2001:db8:1:3::1")
