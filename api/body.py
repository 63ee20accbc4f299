"""Reading a request body: its media type, its encoding, within a size and a deadline.

Every route that takes a body reads it here, so every one accepts ``Content-Encoding: gzip`` and
applies ``AGG_MAX_BODY_BYTES`` to what the body *decompresses* to, while it decompresses: a gzip
bomb (megabytes of zeros in a few kilobytes) is refused with 413 as soon as its output passes
the limit, and never more than the limit is held in memory.
"""

from __future__ import annotations

import asyncio
import zlib

from fastapi import Request

from api.errors import BadBody, BodyTimeout, BodyTooLarge, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"
# The encodings a body may come in; "identity" (or no header) is the body as it is.
GZIP_ENCODINGS = frozenset({"gzip", "x-gzip"})
# zlib's window bits for the gzip container (header and CRC), not raw deflate or zlib's own.
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters (``""`` when none is given)."""
    content_type = request.headers.get("content-type") or ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    plus_json = media.startswith("application/") and media.endswith("+json")
    return media == JSON_MEDIA_TYPE or plus_json


def require_json(request: Request) -> None:
    """``application/json`` or any ``application/*+json``; else 415."""
    if not is_json(media_type(request)):
        raise UnsupportedMediaType("content-type must be application/json")


def _gzipped(request: Request) -> bool:
    """Whether the body is gzip; 415 for any encoding but gzip and identity."""
    encoding = (request.headers.get("content-encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        return False
    if encoding in GZIP_ENCODINGS:
        return True
    raise UnsupportedMediaType(
        f"content-encoding {encoding[:40]!r} is not supported; send gzip or no encoding"
    )


class Inflater:
    """gzip decompression that stops as soon as the output passes ``limit`` bytes.

    Each call to zlib produces at most what is left of the limit plus one byte, so the output
    in memory never exceeds the limit by more than a byte, however much the input would
    expand. Several gzip members one after the other (RFC 1952 allows it; ``cat a.gz b.gz``
    makes them) are one body.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._output = bytearray()
        self._stream = zlib.decompressobj(_GZIP_WBITS)
        self._pending = False  # the current member has started and not ended

    def feed(self, data: bytes) -> None:
        while data:
            self._pending = True
            try:
                piece = self._stream.decompress(data, self.limit - len(self._output) + 1)
            except zlib.error as exc:
                raise BadBody(f"the body is not valid gzip: {exc}") from None
            self._output += piece
            if len(self._output) > self.limit:
                raise BodyTooLarge(f"the body is larger than {self.limit} bytes once decompressed")
            if self._stream.eof:
                data = self._stream.unused_data
                self._stream = zlib.decompressobj(_GZIP_WBITS)
                self._pending = False
            else:
                data = self._stream.unconsumed_tail

    def finish(self) -> bytes:
        if self._pending:
            raise BadBody("the gzip body is truncated")
        return bytes(self._output)


async def read_body(request: Request, *, limit: int, timeout_s: float) -> bytes:
    """The whole body, decompressed if it is gzip; refused as soon as it (or its compressed
    form) passes ``limit`` bytes, or the transfer passes ``timeout_s`` seconds."""
    inflater = Inflater(limit) if _gzipped(request) else None
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body is larger than {limit} bytes")
    received = 0
    chunks = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise BodyTooLarge(f"the body is larger than {limit} bytes")
                if inflater is None:
                    chunks += chunk
                else:
                    inflater.feed(chunk)
    except TimeoutError:
        raise BodyTimeout(
            f"the body did not arrive within {timeout_s:g}s (AGG_BODY_TIMEOUT_S)"
        ) from None
    return bytes(chunks) if inflater is None else inflater.finish()
