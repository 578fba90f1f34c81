"""The import's keyed hash and id generation, against the standard library's definitions."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from hypothesis import given
from hypothesis import strategies as st

from labelvault.datasets.service import KeyedHash, uuid4_strings


@given(st.binary(max_size=150), st.lists(st.binary(max_size=600), min_size=1, max_size=5))
def test_keyed_hash_is_hmac_sha256(key: bytes, messages: list[bytes]) -> None:
    # stored dedup keys and subject references must stay comparable with earlier imports
    keyed = KeyedHash(key)
    for message in messages:
        assert keyed.digest(message) == hmac.new(key, message, hashlib.sha256).digest()


@given(st.integers(1, 300))
def test_ids_are_distinct_random_version_4_uuids(n: int) -> None:
    ids = uuid4_strings(n)
    parsed = [uuid.UUID(i) for i in ids]
    assert len(set(ids)) == n
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))  # canonical text form
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
