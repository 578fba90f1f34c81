"""RFC 9162 Merkle tree: known answers, a naive second implementation, proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelvault.audit import (
    EMPTY_ROOT,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)

# RFC 6962 test vectors (as used by certificate-transparency and transparency-dev/merkle).
ENTRIES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [leaf_hash(bytes.fromhex(e)) for e in ENTRIES]


def h(hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes.split()]


# --- a naive implementation straight from the RFC text -------------------------------------


def naive_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return d[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:])).digest()


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def make_leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_known_answer_roots(size: int) -> None:
    assert merkle_root(LEAVES[:size]).hex() == ROOTS[size]
    assert naive_mth(LEAVES[:size]).hex() == ROOTS[size]


def test_empty_root_and_leaf_prefix() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()


def test_known_answer_proofs() -> None:
    assert inclusion_proof(LEAVES, 0) == h(
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7 "
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e "
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
    )
    assert consistency_proof(LEAVES, 6) == h(
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a "
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0 "
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"
    )
    assert consistency_proof(LEAVES[:5], 2) == h(
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e "
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
    )


def test_roots_match_naive_implementation_up_to_200() -> None:
    leaves = make_leaves(200)
    acc = MerkleAccumulator()
    for n in range(201):
        assert acc.root() == naive_mth(leaves[:n]) == merkle_root(leaves[:n])
        if n < 200:
            acc.append(leaves[n])


def test_odd_node_is_promoted_not_duplicated() -> None:
    a, b, c = make_leaves(3)
    ab = hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle_root([a, b, c]) == hashlib.sha256(b"\x01" + ab + c).digest()
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])


def test_accumulator_state_round_trip() -> None:
    leaves = make_leaves(77)
    acc = MerkleAccumulator()
    acc.extend(leaves[:50])
    size, stack = acc.state()
    resumed = MerkleAccumulator.from_state(size, stack)
    resumed.extend(leaves[50:])
    assert resumed.size == 77
    assert resumed.root() == naive_mth(leaves)
    with pytest.raises(ValueError):
        MerkleAccumulator.from_state(size + 1, stack)


@pytest.mark.parametrize("n", range(1, 41))
def test_inclusion_proofs_all_indices(n: int) -> None:
    leaves = make_leaves(n)
    root = merkle_root(leaves)
    for m in range(n):
        proof = inclusion_proof(leaves, m)
        assert proof == naive_path(m, leaves)
        assert verify_inclusion(leaves[m], m, n, proof, root)
        assert not verify_inclusion(leaves[(m + 1) % n], m, n, proof, root) or n == 1
        assert not verify_inclusion(leaves[m], m, n, [*proof, root], root)
        for i in range(len(proof)):
            bad = list(proof)
            bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
            assert not verify_inclusion(leaves[m], m, n, bad, root)
        if proof:
            assert not verify_inclusion(leaves[m], m, n, proof[:-1], root)
            other = m ^ 1 if (m ^ 1) < n else None
            if other is not None:
                assert not verify_inclusion(leaves[m], other, n, proof, root)
    with pytest.raises(ValueError):
        inclusion_proof(leaves, n)


@pytest.mark.parametrize("n", range(1, 41))
def test_consistency_proofs_all_sizes(n: int) -> None:
    leaves = make_leaves(n)
    new_root = merkle_root(leaves)
    for m in range(0, n + 1):
        old_root = merkle_root(leaves[:m])
        proof = consistency_proof(leaves, m)
        if 0 < m < n:
            assert proof == naive_subproof(m, leaves, True)
        assert verify_consistency(m, n, old_root, new_root, proof)
        if 0 < m < n:
            assert not verify_consistency(m, n, new_root, new_root, proof)
            assert not verify_consistency(m, n, old_root, old_root, proof)
            assert not verify_consistency(m, n, old_root, new_root, proof[:-1])
            assert not verify_consistency(m, n, old_root, new_root, [])
            for i in range(len(proof)):
                bad = list(proof)
                bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
                assert not verify_consistency(m, n, old_root, new_root, bad)
    assert not verify_consistency(n, n - 1, new_root, new_root, [])
    assert not verify_consistency(n, n, new_root, EMPTY_ROOT, [])


def test_proof_lengths_are_exact() -> None:
    leaves = make_leaves(8)
    root = merkle_root(leaves)
    proof = inclusion_proof(leaves, 5)
    assert not verify_inclusion(leaves[5], 5, 8, [*proof, proof[-1]], root)
    cproof = consistency_proof(leaves, 3)
    assert not verify_consistency(3, 8, merkle_root(leaves[:3]), root, [*cproof, root])


@given(st.integers(1, 300), st.data())
def test_proofs_random_sizes(n: int, data: st.DataObject) -> None:
    leaves = make_leaves(n)
    root = merkle_root(leaves)
    m = data.draw(st.integers(0, n - 1))
    assert verify_inclusion(leaves[m], m, n, inclusion_proof(leaves, m), root)
    old = data.draw(st.integers(0, n))
    proof = consistency_proof(leaves, old)
    assert verify_consistency(old, n, merkle_root(leaves[:old]), root, proof)
