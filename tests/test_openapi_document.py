"""What the OpenAPI document says, read as a client reads it: valid OpenAPI, each route's bodies,
parameters, answers and examples, every example true to its schema; docs pages self-contained."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from aggregator.settings import Settings
from api.app import create_app
from tests.support.running import api_client

# A batch limit of this module's own, to find in the document.
MAX_BATCH = 20


async def _document(tmp_path: Path) -> dict[str, Any]:
    """``/openapi.json`` as served (no lifespan needed: the document does not touch the broker)."""
    settings = Settings(db_path=tmp_path / "unused.db", max_batch=MAX_BATCH)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://aggregator") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _examples(response: dict[str, Any]) -> list[Any]:
    media = response["content"]["application/json"]
    return [example["value"] for example in media.get("examples", {}).values()]


async def test_document_is_valid_openapi(tmp_path: Path) -> None:
    validate(await _document(tmp_path))


async def test_publish_documents_its_body_and_errors_with_examples(tmp_path: Path) -> None:
    document = await _document(tmp_path)
    publish = document["paths"]["/publish"]["post"]

    body = publish["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == ["application/json"]
    refs = [s["$ref"] for s in body["content"]["application/json"]["schema"]["oneOf"]]
    names = [ref.rsplit("/", 1)[1] for ref in refs]
    assert names == ["Event", "EventBatch", "EventEnvelope"]
    schemas = document["components"]["schemas"]
    assert schemas["EventBatch"]["maxItems"] == MAX_BATCH
    assert set(schemas["Event"]["required"]) == {
        "topic",
        "event_id",
        "timestamp",
        "source",
        "payload",
    }
    assert schemas["Event"]["additionalProperties"] is False
    assert schemas["Event"]["examples"]
    assert len(body["content"]["application/json"]["examples"]) == 3

    responses = publish["responses"]
    assert set(responses) == {
        "202", "400", "401", "403", "408", "413", "415", "422", "429", "503"
    }  # fmt: skip
    for status in responses:
        assert _examples(responses[status]), f"{status} has no example"
    problem = "#/components/schemas/Problem"
    for status in ("400", "401", "403", "408", "413", "415", "429", "503"):
        assert responses[status]["content"]["application/json"]["schema"]["$ref"] == problem
    validation = responses["422"]["content"]["application/json"]["schema"]["$ref"]
    assert validation == "#/components/schemas/ValidationProblem"
    for status in ("429", "503"):
        retry_after = responses[status]["headers"]["Retry-After"]
        assert retry_after["required"] is True
        assert retry_after["schema"]["type"] == "integer"
    assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True


async def test_every_route_documents_a_response_model(tmp_path: Path) -> None:
    document = await _document(tmp_path)
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    expected = {
        ("POST", "/publish"),
        ("GET", "/events"),
        ("GET", "/events/{topic}/{event_id}"),
        ("GET", "/stats"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/v1/logs"),
        ("POST", "/ingest/{topic}"),
    }
    assert expected <= set(operations)
    for (method, path), operation in operations.items():
        for status, response in operation["responses"].items():
            content = response.get("content")
            assert content, f"{method} {path} {status} documents no body"
            for media_type, media in content.items():
                assert media.get("schema"), f"{method} {path} {status} {media_type} has no schema"

    metrics = operations.get(("GET", "/metrics"))
    if metrics is not None:  # the Prometheus text format, not JSON
        assert list(metrics["responses"]["200"]["content"]) == ["text/plain"]

    readyz = operations[("GET", "/readyz")]["responses"]
    ready, unready = (readyz[s]["content"]["application/json"]["schema"] for s in ("200", "503"))
    assert ready == unready == {"$ref": "#/components/schemas/Readiness"}
    events = operations[("GET", "/events")]
    limit = next(p for p in events["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    assert _examples(events["responses"]["422"])


async def test_the_read_routes_document_each_parameter_and_the_export(tmp_path: Path) -> None:
    paths = (await _document(tmp_path))["paths"]
    events = paths["/events"]["get"]
    names = {p["name"]: p for p in events["parameters"]}
    assert set(names) == {"topic", "source", "since", "until", "q", "order", "limit", "after"}
    for name, parameter in names.items():
        assert parameter["description"], name
        assert parameter["schema"].get("examples"), name
    assert names["order"]["schema"]["enum"] == ["asc", "desc"]
    assert set(events["responses"]["200"]["content"]) == {
        "application/json",
        "application/x-ndjson",
    }
    one = paths["/events/{topic}/{event_id}"]["get"]
    assert {"200", "404", "422"} <= set(one["responses"])
    for path, item in paths.items():
        if "get" in item:
            assert "422" in item["get"]["responses"], f"GET {path} documents no 422"


def _examples_and_schemas(document: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """Every example in the document, where it is, and the schema it should satisfy."""
    for name, component in document["components"]["schemas"].items():
        for example in component.get("examples", []):
            yield f"schema {name}", example, component
        for field, field_schema in component.get("properties", {}).items():
            for example in field_schema.get("examples", []):
                yield f"schema {name}.{field}", example, field_schema
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                for example in parameter["schema"].get("examples", []):
                    yield f"{where} ?{parameter['name']}", example, parameter["schema"]
            bodies = [("request", operation.get("requestBody", {}))]
            bodies += list(operation["responses"].items())
            for status, body in bodies:
                for media_type, media in body.get("content", {}).items():
                    for name, example in media.get("examples", {}).items():
                        yield (
                            f"{where} {status} {media_type} {name}",
                            example["value"],
                            media["schema"],
                        )
                for header, definition in body.get("headers", {}).items():
                    for example in definition["schema"].get("examples", []):
                        yield f"{where} {status} {header}", example, definition["schema"]


async def test_every_example_satisfies_its_schema(tmp_path: Path) -> None:
    document = await _document(tmp_path)
    examples = list(_examples_and_schemas(document))
    assert len(examples) > 30
    failures = []
    for where, example, schema_ in examples:
        # The components ride along so that the schema's references resolve.
        validator = OAS31Validator({**schema_, "components": document["components"]})
        failures += [f"{where}: {error.message}" for error in validator.iter_errors(example)]
    assert not failures


async def test_the_docs_pages_load_nothing_from_elsewhere(settings: Settings) -> None:
    async with api_client(settings) as client:
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            sources = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(
                r"url: '([^']+)'", html
            )
            assert sources, page
            assert not [s for s in sources if "://" in s], f"{page} loads {sources}"
            for source in sources:
                if source.startswith("/static/"):
                    asset = await client.get(source)
                    assert asset.status_code == 200 and asset.content, source


async def test_otlp_documents_both_encodings_and_the_specs_answers(tmp_path: Path) -> None:
    document = await _document(tmp_path)
    logs = document["paths"]["/v1/logs"]["post"]
    both = ["application/x-protobuf", "application/json"]
    assert sorted(logs["requestBody"]["content"]) == sorted(both)
    responses = logs["responses"]
    assert set(responses) == {
        "200", "400", "401", "403", "408", "413", "415", "429", "503"
    }  # fmt: skip
    for status, response in responses.items():
        assert sorted(response["content"]) == sorted(both), status
        assert _examples(response), f"{status} has no example"
    for status in ("429", "503"):
        assert responses[status]["headers"]["Retry-After"]["required"] is True
    assert responses["400"]["content"]["application/json"]["schema"]["title"] == "Status"


async def test_ingest_documents_ndjson_json_and_the_line_named(tmp_path: Path) -> None:
    document = await _document(tmp_path)
    ingest = document["paths"]["/ingest/{topic}"]["post"]
    content = ingest["requestBody"]["content"]
    assert sorted(content) == ["application/json", "application/x-ndjson"]
    assert content["application/json"]["examples"] and content["application/x-ndjson"]["examples"]
    parameters = {p["name"]: p for p in ingest["parameters"]}
    assert {"topic", "time_key", "id_key", "source_key"} <= set(parameters)
    assert parameters["topic"]["in"] == "path"
    responses = ingest["responses"]
    assert {"202", "400", "401", "403", "413", "415", "422", "429", "503"} <= set(responses)
    assert "line 3" in str(_examples(responses["400"]))
