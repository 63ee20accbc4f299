"""The OpenAPI document says what the API does: schemathesis against the app on the real broker."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from aggregator.settings import Settings
from api.app import create_app
from tests.conftest import make_settings
from tests.support.broker import delete_topology, event_body
from tests.support.processes import free_port
from tests.support.running import api_client, running_worker
from tests.support.waiting import POLL_INTERVAL_S, eventually

# Small limits, so that generated requests reach the 413 answers too.
MAX_BATCH = 20
MAX_BODY_BYTES = 64 * 1024

# Stored before the run, so /events answers with real rows: unusual but valid values throughout.
SEED_EVENTS: list[Any] = [
    event_body("plain"),
    event_body("ünïcødé-漢字-🎉", "a.b-c_D9", timestamp="2026-11-24T10:00:00.123456+05:30"),
    event_body(
        "nested",
        "orders.created",
        source="svc with spaces ✓",
        payload={"list": [1, 2.5, None, True, "x"], "deep": {"a": {"b": []}}, "big": 2**63},
    ),
    event_body("empty-payload", "x", payload={}),
]

# Bodies the API takes that are not JSON: protobuf (OTLP) goes as the bytes generated for its
# binary schema, NDJSON as the text generated for its string schema.
schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


async def _seed(settings: Settings) -> None:
    async with running_worker(settings), api_client(settings) as client:
        response = await client.post("/publish", json=SEED_EVENTS)
        assert response.status_code == 202, response.text

        async def stored() -> int:
            stats: dict[str, Any] = (await client.get("/stats")).json()
            return int(stats["unique_processed"])

        await eventually(stored, lambda n: n == len(SEED_EVENTS), what="the seed events stored")


@pytest.fixture(scope="module")
def seeded_settings(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """This module's own exchange, queue (both deleted afterwards) and store, with events in it."""
    settings = make_settings(
        amqp_url,
        tmp_path_factory.mktemp("openapi"),
        max_batch=MAX_BATCH,
        max_body_bytes=MAX_BODY_BYTES,
    )
    try:
        asyncio.run(_seed(settings))
        yield settings
    finally:
        asyncio.run(delete_topology(settings))


@pytest.fixture(scope="module")
def app(seeded_settings: Settings) -> FastAPI:
    app = create_app(seeded_settings)
    assert app.openapi() == schema.raw_schema, "the app serves another document than the one tested"
    return app


@pytest.fixture
def ready_app(app: FastAPI) -> FastAPI:
    """The app with its lifespan running and the publisher connected, so /publish can answer 202.

    Schemathesis starts the lifespan at the first call and ends it after each test (operation).
    """
    readyz = schema["/readyz"]["GET"]
    deadline = time.monotonic() + 15
    while (status := readyz.Case().call(app=app).status_code) != 200:
        assert time.monotonic() < deadline, f"/readyz still answers {status}"
        time.sleep(POLL_INTERVAL_S)  # poll interval with a deadline
    return app


def _collection_document() -> dict[str, Any]:
    """The document of an app with the test's limits; making it needs no broker and no store.

    The ``app`` fixture checks that the app under test serves this same document.
    """
    settings = Settings(max_batch=MAX_BATCH, max_body_bytes=MAX_BODY_BYTES)
    return create_app(settings).openapi()


# Loaded at collection, which parametrizes the test by operation. (`from_fixture` would build it
# from the fixtures, but fails on this pytest: it reads `request.node._nodeid`.)
schema = schemathesis.openapi.from_dict(_collection_document())


@pytest.mark.broker
@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    # `ready_app` is shared by all the examples of an operation on purpose: the app keeps running.
    # Drawing nested event bodies can be slow on a loaded CI machine; that is no failure.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_openapi_document(
    case: schemathesis.Case[Any], ready_app: FastAPI
) -> None:
    case.call_and_validate(app=ready_app, checks=CHECKS)


# 503 is the documented answer without a broker: every check but "not a server error".
CHECKS_WITHOUT_BROKER = [c for c in CHECKS if c is not schemathesis.checks.not_a_server_error]


@pytest.fixture
async def client_without_broker(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this test's event loop, with nothing listening where its broker should be.

    (In the test's loop, not schemathesis's thread: aio-pika leaves each failed connection to
    its ``__del__``, which needs the loop it was made in to be current.)
    """
    settings = Settings(
        amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        db_path=tmp_path / "aggregator.db",
        max_batch=MAX_BATCH,
        max_body_bytes=MAX_BODY_BYTES,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aggregator") as client:
            yield client


async def test_answers_without_a_broker_conform(client_without_broker: httpx.AsyncClient) -> None:
    publish = schema["/publish"]["POST"].Case(body=SEED_EVENTS[:2], media_type="application/json")
    response = await client_without_broker.post("/publish", json=SEED_EVENTS[:2])
    publish.validate_response(response, checks=CHECKS_WITHOUT_BROKER)
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()

    readyz = schema["/readyz"]["GET"].Case()
    response = await client_without_broker.get("/readyz")
    readyz.validate_response(response, checks=CHECKS_WITHOUT_BROKER)
    assert (response.status_code, response.json()) == (
        503,
        {"broker": "unavailable", "store": "ok"},
    )


def _cursor(decoded: str) -> str:
    return base64.urlsafe_b64encode(decoded.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "decoded",
    [
        "seq:\N{SUPERSCRIPT TWO}",  # a digit to str.isdigit(), not to int()
        "seq:\N{ARABIC-INDIC DIGIT THREE}",
        f"seq:{2**63}",  # past SQLite's INTEGER
        "seq:" + "9" * 40,
        "seq:-1",
        "seq:",
        "nope:1",
        "pos:1",
        "pos:1:2:3",
        "pos:-1:2",
        "pos::1",
        "pos:0:",
        f"pos:{2**63}:0",
        f"pos:0:{2**63}",
    ],
)
async def test_a_cursor_the_api_did_not_issue_is_a_documented_422(
    client_without_broker: httpx.AsyncClient, decoded: str
) -> None:
    case = schema["/events"]["GET"].Case(query={"after": _cursor(decoded)})
    response = await client_without_broker.get("/events", params={"after": _cursor(decoded)})
    case.validate_response(response, checks=CHECKS)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "after"]


@pytest.mark.parametrize("decoded", [f"seq:{2**63 - 1}", f"pos:{2**63 - 1}:{2**63 - 1}"])
async def test_the_largest_cursor_is_accepted(
    client_without_broker: httpx.AsyncClient, decoded: str
) -> None:
    response = await client_without_broker.get("/events", params={"after": _cursor(decoded)})
    assert (response.status_code, response.json()) == (200, {"events": [], "next": None})
