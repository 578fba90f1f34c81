"""The per-chain hash chain, computed identically in Python and in PostgreSQL.

Each stored event links to the one before it::

    chain_hash = SHA-256(prev_hash || int8be(seq) || int8be(ts_us) || leaf)

which in PostgreSQL, using built-in functions only, is::

    sha256(prev_hash || int8send(seq) || int8send(ts_us) || leaf)

``seq`` starts at 1; the ``prev_hash`` of seq 1 is :func:`genesis_hash` of the chain id, so an
event (or a whole chain) cannot be moved to another chain and still verify.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Final, NamedTuple

GENESIS_PREFIX: Final = b"labelvault-audit-v1\x00"
HASH_LEN: Final = 32
MAX_CHAIN_ID_CHARS: Final = 200
_INT8: Final = struct.Struct(">q")


def genesis_hash(chain_id: str) -> bytes:
    """``SHA-256(b"labelvault-audit-v1\\x00" || UTF-8(chain_id))``: the prev_hash of seq 1.

    SQL: ``sha256('\\x6c6162656c7661756c742d61756469742d763100'::bytea
    || convert_to(chain_id, 'UTF8'))``.
    """
    if not isinstance(chain_id, str) or not chain_id or len(chain_id) > MAX_CHAIN_ID_CHARS:
        raise ValueError("chain_id must be a non-empty string of at most 200 characters")
    if not chain_id.isprintable():
        raise ValueError("chain_id contains a control character")
    return hashlib.sha256(GENESIS_PREFIX + chain_id.encode("utf-8")).digest()


def link_hash(prev_hash: bytes, seq: int, ts_us: int, leaf: bytes) -> bytes:
    """The chain hash of event ``seq``.

    Exactly the PostgreSQL expression
    ``sha256(prev_hash || int8send(seq) || int8send(ts_us) || leaf)``, where ``int8send`` is the
    8-byte big-endian two's-complement encoding of a bigint.
    """
    if len(prev_hash) != HASH_LEN or len(leaf) != HASH_LEN:
        raise ValueError("prev_hash and leaf must be 32 bytes")
    try:
        packed = _INT8.pack(seq) + _INT8.pack(ts_us)
    except struct.error:
        raise ValueError("seq and ts_us must fit in a signed 64-bit integer") from None
    return hashlib.sha256(prev_hash + packed + leaf).digest()


EventRow = tuple[int, int, bytes, bytes, bytes, bytes]  # seq, ts_us, body, leaf, prev, chain


class StoredEvent(NamedTuple):
    """One row of an audit chain table, as read back (``body`` exactly as hashed)."""

    seq: int
    ts_us: int
    body: bytes
    leaf: bytes
    prev_hash: bytes
    chain_hash: bytes

    @classmethod
    def append_to(cls, prev_hash: bytes, seq: int, ts_us: int, body: bytes) -> StoredEvent:
        """The row the SQL append would write after a head with ``prev_hash`` (reference)."""
        leaf = hashlib.sha256(b"\x00" + body).digest()
        return cls(seq, ts_us, body, leaf, prev_hash, link_hash(prev_hash, seq, ts_us, leaf))


_LEAF_PREFIX: Final = hashlib.sha256(b"\x00")
_EMPTY: Final = hashlib.sha256()
_INT8X2: Final = struct.Struct(">qq")


def clean_run(
    rows: Iterable[EventRow],
    expected: int,
    prev_chain: bytes,
    prev_ts: int,
) -> bool:
    """True if every row (``seq, ts_us, body, leaf, prev_hash, chain_hash``) is as it should be.

    Starting from the state after the preceding row (the seq it must have, its chain hash and
    timestamp): seq contiguous, link hashes recomputing, links to the stored chain hash before
    it, timestamps never going back, leaf hashes recomputing. The verifier's fast path: anything
    short of clean is diagnosed row by row.
    """
    # copying a primed hash object is ~2x cheaper than constructing one (OpenSSL 3)
    leaf_hasher, link_hasher, pack = _LEAF_PREFIX.copy, _EMPTY.copy, _INT8X2.pack
    try:
        for seq, ts, body, leaf, prev, chain in rows:
            lh = leaf_hasher()
            lh.update(body)
            ch = link_hasher()
            ch.update(prev)
            ch.update(pack(seq, ts))
            ch.update(leaf)
            if not (
                seq == expected
                and lh.digest() == leaf
                and prev == prev_chain
                and ch.digest() == chain
                and ts >= prev_ts
            ):
                return False
            expected += 1
            prev_chain, prev_ts = chain, ts
    except (TypeError, ValueError, struct.error, OverflowError):
        return False
    return True
