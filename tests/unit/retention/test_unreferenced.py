"""The reconciler's merge of the store's listing with the rows' references: exactly the listed
ids no row refers to, whatever the two sorted streams hold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from labelvault.retention.orphans import unreferenced
from labelvault.storage.base import BLOB_ID_PATTERN

blob_ids = st.from_regex(BLOB_ID_PATTERN, fullmatch=True)


async def _stream(values: list[str]) -> AsyncIterator[str]:
    for value in values:
        yield value


@given(st.sets(blob_ids, max_size=40), st.sets(blob_ids, max_size=40), st.sets(blob_ids))
def test_exactly_the_unreferenced(stored: set[str], both: set[str], rows: set[str]) -> None:
    listed = sorted(stored | both)
    references = sorted(both | rows)
    out = asyncio.run(unreferenced(listed, _stream(references)))
    assert out == sorted(set(listed) - set(references))


def test_byte_order_of_mixed_case_and_punctuation() -> None:
    listed = ["0-a", "A", "Z.b", "_", "a", "item-1"]
    out = asyncio.run(unreferenced(listed, _stream(["A", "a", "b"])))
    assert out == ["0-a", "Z.b", "_", "item-1"]
