"""Hash-chain link and genesis functions (the contract with the SQL append statement)."""

from __future__ import annotations

import hashlib

import pytest
from audit_testchain import sql_link
from hypothesis import given
from hypothesis import strategies as st

from labelvault.audit import StoredEvent, genesis_hash, link_hash

int8 = st.integers(-(2**63), 2**63 - 1)
h32 = st.binary(min_size=32, max_size=32)


def test_genesis_hash_known_answer() -> None:
    expected = hashlib.sha256(bytes.fromhex("6c6162656c7661756c742d61756469742d763100") + b"p1")
    assert genesis_hash("p1") == expected.digest()
    assert genesis_hash("p1") != genesis_hash("p2")
    for bad in ("", "a\nb", "x" * 201):
        with pytest.raises(ValueError):
            genesis_hash(bad)


def test_link_hash_known_layout() -> None:
    prev, leaf = b"\x11" * 32, b"\x22" * 32
    # int8send(1) = 00..01, int8send(-1) = ff..ff
    data = prev + bytes(7) + b"\x01" + b"\xff" * 8 + leaf
    assert link_hash(prev, 1, -1, leaf) == hashlib.sha256(data).digest()


@given(h32, int8, int8, h32)
def test_link_hash_matches_sql_formula(prev: bytes, seq: int, ts: int, leaf: bytes) -> None:
    assert link_hash(prev, seq, ts, leaf) == sql_link(prev, seq, ts, leaf)


def test_link_hash_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        link_hash(b"\x00" * 31, 1, 1, b"\x00" * 32)
    with pytest.raises(ValueError):
        link_hash(b"\x00" * 32, 2**63, 1, b"\x00" * 32)


def test_stored_event_append_to() -> None:
    prev = genesis_hash("c")
    row = StoredEvent.append_to(prev, 1, 5, b"{}")
    assert row.leaf == hashlib.sha256(b"\x00{}").digest()
    assert row.chain_hash == sql_link(prev, 1, 5, row.leaf)
