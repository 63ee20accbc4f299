"""What the API refuses, as exceptions, and the one place that turns them into responses.

Routes raise; the handlers here give each refusal its status code, its headers and its one-line
``detail`` (or FastAPI's list of field errors for a 422), and count it in
``agg_api_requests_rejected_total`` by reason. A route whose protocol prescribes another error
body (OTLP's ``Status``) says so with a ``render_refusal`` attribute on its route class: the
status, headers and counting stay the same, only the body's shape is the route's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from aggregator.errors import (
    AggregatorError,
    BrokerUnavailable,
    EventTooLarge,
    InvalidBody,
    InvalidEvents,
    InvalidRecord,
    StoreUnavailable,
    TooManyEvents,
)
from aggregator.metrics import ApiMetrics

# Seconds a client should wait before retrying after a 503 (the broker or the store is down).
RETRY_AFTER_S = "2"


class Refusal(AggregatorError):
    """A request the API will not serve: ``status``, ``reason`` (the metric label), headers."""

    status = 400
    reason = "bad_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.headers = headers or {}


class UnsupportedMediaType(Refusal):
    """A content type the route does not read, or a content encoding other than gzip."""

    status, reason = 415, "unsupported_media_type"


class BadBody(Refusal):
    """The body cannot be read as sent: gzip that does not decompress, or a truncated one."""

    status, reason = 400, "bad_encoding"


class BodyTooLarge(Refusal):
    status, reason = 413, "too_large"


class BodyTimeout(Refusal):
    """The body did not arrive within AGG_BODY_TIMEOUT_S (a slow or stalled client)."""

    status, reason = 408, "timeout_body"


class Unauthenticated(Refusal):
    """No key, or one the API does not know."""

    status, reason = 401, "unauthenticated"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="aggregator"'})


class Forbidden(Refusal):
    """A known key without the scope, or a topic outside its patterns."""

    status, reason = 403, "forbidden"


class NotFound(Refusal):
    status, reason = 404, "not_found"


class RateLimited(Refusal):
    status, reason = 429, "rate_limited"


class BadQuery(Refusal):
    """A query parameter FastAPI cannot check by its type (a cursor, a time, a search), or one
    the route does not take: a 422 in FastAPI's shape, one error per parameter."""

    status, reason = 422, "invalid"

    def __init__(self, parameter: str, msg: str, type_: str, *, input_: object = None) -> None:
        super().__init__(msg)
        error: dict[str, Any] = {"loc": ["query", parameter], "msg": msg, "type": type_}
        if input_ is not None:
            error["input"] = input_
        self.errors = [error]

    def also(self, other: BadQuery) -> BadQuery:
        """This refusal with the errors of ``other`` after its own."""
        self.errors += other.errors
        return self


# How a route renders a refusal itself: (request, status, one-line detail, headers) -> response.
RenderRefusal = Callable[[Request, int, str, dict[str, str]], Response]


def problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)


def answer(
    request: Request, status: int, detail: Any, headers: dict[str, str] | None = None
) -> Response:
    """The refusal as the matched route renders it, else as ``{"detail": ...}``."""
    render: RenderRefusal | None = getattr(request.scope.get("route"), "render_refusal", None)
    if render is None:
        return problem(status, detail, headers)
    text = detail if isinstance(detail, str) else "; ".join(str(d.get("msg", d)) for d in detail)
    return render(request, status, text, headers or {})


def install_handlers(app: FastAPI, metrics: ApiMetrics) -> None:
    """Map every refusal to its response, counting it by reason."""

    def counted(reason: str) -> None:
        metrics.rejected.labels(reason).inc()

    async def refusal(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        counted(exc.reason)
        detail: Any = exc.errors if isinstance(exc, BadQuery) else str(exc)
        return answer(request, exc.status, detail, exc.headers)

    async def invalid_body(request: Request, exc: Exception) -> Response:
        counted("not_json")
        return answer(request, 400, str(exc))

    async def invalid_record(request: Request, exc: Exception) -> Response:
        counted("invalid")
        return answer(request, 400, str(exc))

    async def invalid_events(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidEvents)
        counted("invalid")
        return answer(request, 422, exc.errors)

    async def too_large(request: Request, exc: Exception) -> Response:
        counted("too_large")
        return answer(request, 413, str(exc))

    async def broker_unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BrokerUnavailable)
        counted(exc.reason)
        return answer(request, 503, str(exc), {"Retry-After": RETRY_AFTER_S})

    async def store_unavailable(request: Request, exc: Exception) -> Response:
        counted("store")
        return answer(
            request, 503, f"the store is unavailable: {exc}", {"Retry-After": RETRY_AFTER_S}
        )

    app.add_exception_handler(Refusal, refusal)
    app.add_exception_handler(InvalidBody, invalid_body)
    app.add_exception_handler(InvalidEvents, invalid_events)
    app.add_exception_handler(InvalidRecord, invalid_record)
    app.add_exception_handler(TooManyEvents, too_large)
    app.add_exception_handler(EventTooLarge, too_large)
    app.add_exception_handler(BrokerUnavailable, broker_unavailable)
    app.add_exception_handler(StoreUnavailable, store_unavailable)
