"""Request bodies of imports: read whole, within limits, before any database work starts.

An import is one transaction, and a transaction (with the rows and locks it holds) must never
wait on a client: a slow or stalled upload would hold them for as long as it liked. So the body
is read first, into memory only (its plaintext never reaches a temporary file), and at most
:data:`CONCURRENT_UPLOADS` imports per server process hold a body at a time: the next one waits
its turn with its bytes still in the network buffers.
"""

from __future__ import annotations

import asyncio
import io
import weakref
from collections.abc import AsyncIterator
from typing import Final

from starlette.requests import ClientDisconnect

from labelvault.kernel.errors import LabelVaultError

CONCURRENT_UPLOADS: Final = 2
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


class PayloadTooLargeError(LabelVaultError):
    status = 413
    code = "too_large"


class UploadAbortedError(LabelVaultError):
    """The request body ended abnormally (the client went away); nothing was imported."""

    status = 400
    code = "upload_aborted"


def upload_slot() -> asyncio.Semaphore:
    """This event loop's semaphore of imports holding a body in memory."""
    loop = asyncio.get_running_loop()
    slot = _slots.get(loop)
    if slot is None:
        slot = _slots[loop] = asyncio.Semaphore(CONCURRENT_UPLOADS)
    return slot


async def read_head(body: AsyncIterator[bytes], size: int) -> bytes:
    """At least ``size`` bytes of the body (fewer only if it is shorter)."""
    head = b""
    try:
        async for chunk in body:
            head += chunk
            if len(head) >= size:
                break
    except ClientDisconnect:
        raise UploadAbortedError("the upload ended before the whole file arrived") from None
    return head


async def read_all(body: AsyncIterator[bytes], limit: int, head: bytes = b"") -> io.BytesIO:
    """The rest of the body after ``head``, at most ``limit`` bytes in all, in memory."""
    buffer = io.BytesIO()
    buffer.write(head)
    size = len(head)
    try:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"upload larger than {limit} bytes")
            buffer.write(chunk)
    except ClientDisconnect:
        raise UploadAbortedError("the upload ended before the whole file arrived") from None
    buffer.seek(0)
    return buffer
