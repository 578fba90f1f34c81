"""Request bodies handed to a parsing thread while they arrive, in bounded memory.

An import's parser runs in a worker thread and reads a blocking file-like object; the body
arrives on the event loop. :class:`UploadPipe` joins the two: the loop feeds chunks (waiting
while ``capacity`` bytes are unread), the thread reads them. Nothing is written to disk, so the
plaintext of an upload never reaches a temporary file, and a 500 MB file of lines costs a few
MB of memory instead of the file's size (twice). A failure on either side reaches the other:
a body over the limit or a client that goes away fails the reader; an import that stops early
stops the feeding.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Final

from labelvault.kernel.errors import LabelVaultError

PIPE_CAPACITY: Final = 4 * 1024 * 1024


class PayloadTooLargeError(LabelVaultError):
    status = 413
    code = "too_large"


class UploadAbortedError(LabelVaultError):
    """The request body ended abnormally (the client went away); nothing was imported."""

    status = 400
    code = "upload_aborted"


class UploadPipe(io.RawIOBase):
    """Bytes fed by the event loop (:meth:`feed`, :meth:`finish`, :meth:`fail`), read by one
    worker thread (``read``/``readinto`` block until data, end of body, or failure)."""

    def __init__(self, capacity: int = PIPE_CAPACITY) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._pos = 0  # read offset in the first chunk
        self._buffered = 0
        self._capacity = capacity
        self._eof = False
        self._error: BaseException | None = None
        self._space = asyncio.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        with self._cond:
            while not self._chunks and not self._eof and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if not self._chunks:
                return 0  # the end of the body
            chunk = self._chunks[0]
            n = min(len(buffer), len(chunk) - self._pos)
            buffer[:n] = chunk[self._pos : self._pos + n]
            self._pos += n
            if self._pos == len(chunk):
                self._chunks.popleft()
                self._pos = 0
            self._buffered -= n
        self._loop.call_soon_threadsafe(self._space.set)
        return n

    async def feed(self, chunk: bytes) -> None:
        """Hand ``chunk`` to the reader; wait while the pipe is full."""
        while True:
            with self._cond:
                if self._error is not None or self._eof:
                    raise RuntimeError("the upload pipe is closed")
                if self._buffered < self._capacity:
                    self._chunks.append(chunk)
                    self._buffered += len(chunk)
                    self._cond.notify()
                    return
                self._space.clear()
            await self._space.wait()

    def finish(self) -> None:
        """The body is complete: the reader sees the end once it has read everything."""
        with self._cond:
            self._eof = True
            self._cond.notify()

    def fail(self, error: BaseException) -> None:
        """The body failed: the reader raises ``error`` (what it has not read is dropped)."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify()
        self._space.set()


async def pump(body: AsyncIterator[bytes], pipe: UploadPipe, limit: int, received: int) -> None:
    """Feed ``body`` into ``pipe`` (``received`` bytes of it already fed), at most ``limit``."""
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise PayloadTooLargeError(f"upload larger than {limit} bytes")
            if chunk:
                await pipe.feed(chunk)
    except asyncio.CancelledError:
        pipe.fail(UploadAbortedError("the import stopped before the upload ended"))
        raise
    except LabelVaultError as exc:
        pipe.fail(exc)
    except Exception:  # the client went away, or the server's connection failed
        pipe.fail(UploadAbortedError("the upload ended before the whole file arrived"))
    else:
        pipe.finish()


async def read_all(body: AsyncIterator[bytes], limit: int, head: bytes = b"") -> bytes:
    """The whole body in memory (for formats that need it: a zip is read from its end)."""
    buffer = bytearray(head)
    async for chunk in body:
        buffer += chunk
        if len(buffer) > limit:
            raise PayloadTooLargeError(f"upload larger than {limit} bytes")
    return bytes(buffer)
