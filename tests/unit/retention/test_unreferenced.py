"""The reconciler's merge of the store's listing with the rows' references: exactly the stored
blobs no row refers to, and exactly the items' blobs that are not stored, whatever the two
sorted streams hold."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from labelvault.retention.orphans import compare
from labelvault.storage.base import BLOB_ID_PATTERN, BlobInfo

blob_ids = st.from_regex(BLOB_ID_PATTERN, fullmatch=True)
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def _stream(refs: dict[str, bool]) -> AsyncIterator[tuple[str, bool]]:
    for blob_id in sorted(refs):
        yield blob_id, refs[blob_id]


@given(
    st.sets(blob_ids, max_size=40),
    st.dictionaries(blob_ids, st.booleans(), max_size=40),
    st.dictionaries(blob_ids, st.booleans(), max_size=40),
)
def test_exactly_the_unreferenced_and_the_unlisted(
    stored_only: set[str], both: dict[str, bool], rows_only: dict[str, bool]
) -> None:
    refs = rows_only | both
    stored = stored_only | set(both)
    listed = [BlobInfo(b, WHEN) for b in sorted(stored)]
    out = asyncio.run(compare(listed, _stream(refs)))
    assert [b.blob_id for b in out.unreferenced] == sorted(stored - set(refs))
    unlisted = sorted(b for b, of_item in refs.items() if b not in stored and of_item)
    assert out.unlisted_items == unlisted and out.unlisted_total == len(unlisted)
    kept = asyncio.run(compare(listed, _stream(refs), keep=2))
    assert kept.unlisted_items == unlisted[:2] and kept.unlisted_total == len(unlisted)


def test_byte_order_of_mixed_case_and_punctuation() -> None:
    listed = [BlobInfo(b, WHEN) for b in ["0-a", "A", "Z.b", "_", "a", "item-1"]]
    out = asyncio.run(compare(listed, _stream({"A": True, "a": False, "b": True, "B": False})))
    assert [b.blob_id for b in out.unreferenced] == ["0-a", "Z.b", "_", "item-1"]
    assert out.unlisted_items == ["b"]
