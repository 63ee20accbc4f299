"""What the routes get from the app: the publisher, the store, the settings, the metrics, and
who is calling (``Caller``, with the scope a route needs checked)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from aggregator.metrics import ApiMetrics
from aggregator.settings import Settings
from aggregator.store import DedupStore
from api.errors import Forbidden, Unauthenticated
from api.keys import ApiKey, KeyRing
from api.publisher import Publisher


async def _publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


async def _store(request: Request) -> DedupStore:
    store: DedupStore = request.app.state.store
    return store


async def _metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# Async, all of them: FastAPI runs a plain ``def`` dependency in a thread pool, a thread hop per
# dependency per request (profiled: about a quarter of a single-event request's time).
PublisherDep = Annotated[Publisher, Depends(_publisher)]
StoreDep = Annotated[DedupStore, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]

# Both ways a client may present a key (some log shippers can only set a plain header); as
# security schemes, so the OpenAPI document says so.
_bearer = HTTPBearer(auto_error=False, description="the API key as a bearer token")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a key (None while keys are off) and the bucket its rate counts in."""

    key: ApiKey | None
    client: str

    @property
    def publisher(self) -> str | None:
        return None if self.key is None else self.key.name

    def check_topics(self, topics: list[str]) -> None:
        """403 naming the first topic outside the key's patterns."""
        if self.key is None:
            return
        for topic in topics:
            if not self.key.may_publish_to(topic):
                raise Forbidden(f"the key {self.key.name!r} may not publish to topic {topic!r}")


def authenticate(request: Request, scope: str) -> Caller:
    """The caller, once its key is known and has ``scope`` (401 / 403 if not).

    A plain function as well as a dependency (:func:`caller_with`): the single-event path calls
    it directly, since each FastAPI dependency costs a request measurable time.
    """
    keyring: KeyRing | None = request.app.state.keyring
    if keyring is None:
        return Caller(None, request.client.host if request.client else "")
    token = request.headers.get("x-api-key")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        token = credentials.strip()
    if not token:
        raise Unauthenticated(
            "an API key is required: Authorization: Bearer <token>, or X-API-Key: <token>"
        )
    key = keyring.authenticate(token)
    if key is None:
        raise Unauthenticated("unknown API key")
    if scope not in key.scopes:
        raise Forbidden(f"the key {key.name!r} lacks the {scope!r} scope")
    return Caller(key, key.name)


# What the OpenAPI document says a route with a key needs (the schemes below).
SECURITY: list[dict[str, list[str]]] = [{"HTTPBearer": []}, {"APIKeyHeader": []}]


def caller_with(scope: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller, once its key is known and has ``scope`` (401 / 403 if not).

    The security schemes are declared so the OpenAPI document says how to send a key.
    """

    async def caller(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header: Annotated[str | None, Security(_header)],
    ) -> Caller:
        return authenticate(request, scope)

    return caller


Publishing = Annotated[Caller, Depends(caller_with("publish"))]
Reading = Annotated[Caller, Depends(caller_with("read"))]
