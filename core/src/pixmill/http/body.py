"""Request bodies sent as the pieces they were built from, never joined into one buffer.

A chat request with a 1024 px image is megabytes, nearly all of it the image's base64. Joining the
JSON text and the base64 into one ``bytes`` copies it all once more into freshly allocated memory
(on Linux, page faults and zeroed pages for every megabyte), and handing one multi-megabyte write
to the event loop's transport copies whatever the socket does not take at once into its buffer,
twice. Sent as slices of the pieces, one after the other, the body costs no copy beyond the
kernel's own and keeps the transport's buffer small.
"""

from __future__ import annotations

from typing import AsyncIterator, Sequence

CHUNK = 256 * 1024  # bytes per write: few enough writes, small enough for the socket to take at once


class RequestBody:
    """A request body as a sequence of byte pieces (JSON text, each image's base64).

    Pass it as ``content=`` to an httpx client with :meth:`headers` (a ``Content-Length``, so that
    it goes out as a plain body, not chunked): iterating it yields the slices to write. It can be
    iterated again for a retry or a redirect.
    """

    __slots__ = ("pieces", "length")

    def __init__(self, pieces: Sequence[bytes]):
        self.pieces = tuple(p for p in pieces if p)
        self.length = sum(len(p) for p in self.pieces)

    def __len__(self) -> int:
        return self.length

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces)

    def headers(self) -> dict[str, str]:
        return {"Content-Length": str(self.length)}

    async def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        for piece in self.pieces:
            if len(piece) <= CHUNK:
                yield piece
                continue
            with memoryview(piece) as view:
                for start in range(0, len(piece), CHUNK):
                    yield view[start:start + CHUNK]
