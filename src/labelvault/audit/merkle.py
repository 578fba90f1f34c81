"""RFC 9162 §2.1 Merkle tree over leaf hashes: roots, inclusion and consistency proofs.

All functions take *leaf hashes* (``SHA-256(0x00 || entry)``), never entries. Interior nodes are
``SHA-256(0x01 || left || right)``; the empty tree hashes to ``SHA-256("")``; a tree of ``n``
leaves splits at the largest power of two strictly below ``n`` (odd nodes are promoted, never
duplicated). Roots are computed in O(n) with a stack of complete-subtree roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


_NODE_PREFIX: Final = hashlib.sha256(b"\x01")


def _hash_pairs(level: list[bytes]) -> list[bytes]:
    """One tree level up: node hashes of (0,1), (2,3), ... (``len(level)`` is even)."""
    out: list[bytes] = []
    add = out.append
    primed = _NODE_PREFIX.copy  # copying a primed hasher beats constructing one (OpenSSL 3)
    for left, right in zip(level[::2], level[1::2], strict=True):
        h = primed()
        h.update(left)
        h.update(right)
        add(h.digest())
    return out


class MerkleAccumulator:
    """Append-only Merkle tree state (a "compact range" from 0): O(log n) memory.

    ``stack`` holds the roots of the complete subtrees that make up the tree, largest first,
    one per set bit of ``size``. :meth:`state`/:meth:`from_state` let a checkpointer persist it
    and resume without re-reading old leaves.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        stack = self._stack
        h = leaf
        s = self._size
        while s & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            s >>= 1
        stack.append(h)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaves; aligned power-of-two blocks are hashed level by level (fast)."""
        batch = leaves if isinstance(leaves, list) else list(leaves)
        i, total = 0, len(batch)
        while i < total:
            size = self._size
            k = min((size & -size).bit_length() - 1 if size else 62, (total - i).bit_length() - 1)
            if k == 0:
                self.append(batch[i])
                i += 1
                continue
            level = batch[i : i + (1 << k)]
            for _ in range(k):
                level = _hash_pairs(level)
            self._push(level[0], k)
            i += 1 << k

    def _push(self, subtree_root: bytes, height: int) -> None:
        """Append a complete subtree of ``2**height`` leaves (``size`` must be aligned)."""
        stack = self._stack
        h = subtree_root
        s = self._size >> height
        while s & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            s >>= 1
        stack.append(h)
        self._size += 1 << height

    def root(self) -> bytes:
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        h = stack[-1]
        for i in range(len(stack) - 2, -1, -1):
            h = _sha256(b"\x01" + stack[i] + h).digest()
        return h

    def state(self) -> tuple[int, tuple[bytes, ...]]:
        return self._size, tuple(self._stack)

    @classmethod
    def from_state(cls, size: int, stack: Sequence[bytes]) -> MerkleAccumulator:
        if size < 0 or len(stack) != size.bit_count() or any(len(h) != 32 for h in stack):
            raise ValueError("inconsistent Merkle accumulator state")
        acc = cls()
        acc._size = size
        acc._stack = list(stack)
        return acc


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over the given leaf hashes."""
    acc = MerkleAccumulator()
    acc.extend(leaves)
    return acc.root()


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1, for ``n = len(leaves)``."""
    if not 0 <= index < len(leaves):
        raise ValueError("leaf index out of range")
    proof: list[bytes] = []
    lo, hi, m = 0, len(leaves), index
    while hi - lo > 1:  # iterate top-down, then reverse: the proof is bottom-up
        k = _split(hi - lo)
        if m < k:
            proof.append(merkle_root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(merkle_root(leaves[lo : lo + k]))
            lo, m = lo + k, m - k
    proof.reverse()
    return proof


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1, for ``m = old_size``, ``n = len(leaves)``."""
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise ValueError("old size out of range")
    if old_size in (0, n):
        return []
    proof: list[bytes] = []
    lo, hi, m, complete = 0, n, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(merkle_root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(merkle_root(leaves[lo : lo + k]))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(merkle_root(leaves[lo:hi]))
    proof.reverse()
    return proof


def _inclusion_length(index: int, size: int) -> int:
    """The exact length of PATH(index, D[size]) (inner nodes plus the right border)."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size or len(proof) != _inclusion_length(index, size):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2 (plus the trivial cases: old size 0, and equal sizes)."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    shift = (old_size & -old_size).bit_length() - 1
    expected = _inclusion_length(old_size - 1, new_size) - shift
    if old_size != 1 << shift:
        expected += 1
    if len(proof) != expected:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
