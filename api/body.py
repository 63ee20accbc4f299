"""Reading a request body: JSON only, within a size and a deadline."""

from __future__ import annotations

import asyncio

from fastapi import Request

from api.errors import BodyTimeout, BodyTooLarge, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"


def require_json(request: Request) -> None:
    """``application/json`` or any ``application/*+json``; else 415."""
    content_type = request.headers.get("content-type")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not (
        media_type == JSON_MEDIA_TYPE
        or (media_type.startswith("application/") and media_type.endswith("+json"))
    ):
        raise UnsupportedMediaType("content-type must be application/json")


async def read_body(request: Request, *, limit: int, timeout_s: float) -> bytes:
    """The whole body, refused as soon as it passes ``limit`` bytes or ``timeout_s`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body is larger than {limit} bytes")
    chunks = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                chunks += chunk
                if len(chunks) > limit:
                    raise BodyTooLarge(f"the body is larger than {limit} bytes")
    except TimeoutError:
        raise BodyTimeout(
            f"the body did not arrive within {timeout_s:g}s (AGG_BODY_TIMEOUT_S)"
        ) from None
    return bytes(chunks)
