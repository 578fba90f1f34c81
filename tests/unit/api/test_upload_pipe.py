"""The pipe between an upload arriving on the event loop and the parser reading in a thread."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelvault.api.uploads import (
    PayloadTooLargeError,
    UploadAbortedError,
    UploadPipe,
    pump,
)


async def _body(chunks: list[bytes], fail_after: int | None = None):  # type: ignore[no-untyped-def]
    for i, chunk in enumerate(chunks):
        if fail_after is not None and i == fail_after:
            raise OSError("connection reset by peer")
        await asyncio.sleep(0)
        yield chunk


def _read_all(pipe: UploadPipe, sizes: list[int]) -> bytes:
    out = bytearray()
    i = 0
    while True:
        data = pipe.read(sizes[i % len(sizes)])
        i += 1
        if not data:
            return bytes(out)
        out += data


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=0, max_size=300), max_size=40),
    st.lists(st.integers(1, 500), min_size=1, max_size=5),
    st.integers(1, 700),
)
def test_reader_gets_every_byte_in_order_within_capacity(
    chunks: list[bytes], sizes: list[int], capacity: int
) -> None:
    async def go() -> bytes:
        pipe = UploadPipe(capacity)
        high = 0

        async def watch() -> None:
            nonlocal high
            while True:
                high = max(high, pipe._buffered)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        reader = asyncio.create_task(asyncio.to_thread(_read_all, pipe, sizes))
        await pump(_body(chunks), pipe, limit=10**9, received=0)
        got = await reader
        watcher.cancel()
        # the feeder waits while the pipe is full: at most one chunk past the capacity
        assert high < capacity + max((len(c) for c in chunks), default=0) + 1
        return got

    assert asyncio.run(go()) == b"".join(chunks)


async def test_a_body_over_the_limit_fails_the_reader() -> None:
    pipe = UploadPipe(64)
    reader = asyncio.create_task(asyncio.to_thread(_read_all, pipe, [10]))
    await pump(_body([b"x" * 50] * 10), pipe, limit=120, received=0)
    with pytest.raises(PayloadTooLargeError):
        await reader


async def test_a_client_that_goes_away_fails_the_reader() -> None:
    pipe = UploadPipe(1024)
    reader = asyncio.create_task(asyncio.to_thread(_read_all, pipe, [7]))
    await pump(_body([b"line\n"] * 5, fail_after=3), pipe, limit=10**6, received=0)
    with pytest.raises(UploadAbortedError):
        await reader


async def test_an_import_that_stops_early_stops_the_feeding() -> None:
    pipe = UploadPipe(16)
    feeding = asyncio.create_task(pump(_body([b"y" * 16] * 100), pipe, 10**6, 0))
    assert await asyncio.to_thread(pipe.read, 5) == b"yyyyy"
    await asyncio.sleep(0.05)
    assert not feeding.done()  # waiting: the pipe is full and nobody reads
    feeding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await feeding
    with pytest.raises(UploadAbortedError):  # a late reader is told, never left waiting
        await asyncio.to_thread(pipe.read, 5)
