"""API keys: who may publish where and read, refusals that publish nothing, rotation in place."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aggregator.settings import Settings
from api.__main__ import refusal
from api.keys import KeysFileError, parse_keys, topic_matches
from tests.conftest import make_settings
from tests.support.broker import delete_topology, event_body, queue_depth
from tests.support.running import api_client, running_worker
from tests.support.waiting import eventually

TOKENS = {"writer": "w-secret", "reader": "r-secret", "billing": "b-secret", "admin": "a-secret"}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def keys_toml(tokens: dict[str, str] = TOKENS) -> str:
    scopes = {"writer": ["publish"], "reader": ["read"], "billing": ["publish", "read"]}
    topics = {"billing": ["billing.#", "audit.*"]}
    lines = []
    for name, token in tokens.items():
        lines += [
            "[[key]]",
            f'name = "{name}"',
            f'sha256 = "{digest(token)}"',
            f"scopes = {scopes.get(name, ['publish', 'read', 'admin'])}",
        ]
        if name in topics:
            lines.append(f"topics = {topics[name]}")
    return "\n".join(lines).replace("'", '"') + "\n"


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("#", "a", True),
        ("#", "a.b.c", True),
        ("billing.#", "billing", True),
        ("billing.#", "billing.invoice.paid", True),
        ("billing.#", "billingx", False),
        ("audit.*", "audit.login", True),
        ("audit.*", "audit", False),
        ("audit.*", "audit.a.b", False),
        ("*.errors", "svc-1.errors", True),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("app.log", "app.log", True),
        ("app.log", "app_log", False),
    ],
)
def test_topic_patterns_match_as_amqp_does(pattern: str, topic: str, matches: bool) -> None:
    assert topic_matches(pattern, topic) is matches


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("not = [toml", "not TOML"),
        ('[[key]]\nname = "a"\nsha256 = "abc"\nscopes = ["publish"]', "64 hex digits"),
        (f'[[key]]\nname = "a"\nsha256 = "{"0" * 64}"\nscopes = ["write"]', "scopes"),
        (f'[[key]]\nname = "a"\nsha256 = "{"0" * 64}"\nscopes = []', "scopes"),
        (
            f'[[key]]\nname = "a"\nsha256 = "{"0" * 64}"\nscopes = ["read"]\ntopics = ["a b"]',
            "topic patterns",
        ),
        (f'[[key]]\nname = "a"\nsha256 = "{"0" * 64}"\nscopes = ["read"]\nrole = 1', "unknown"),
        (
            f'[[key]]\nname = "a"\nsha256 = "{"0" * 64}"\nscopes = ["read"]\n' * 2,
            "share a name",
        ),
    ],
)
def test_a_bad_keys_file_says_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(KeysFileError, match=complaint):
        parse_keys(text, "keys.toml")


def test_keys_are_required_beyond_loopback(tmp_path: Path) -> None:
    open_host = make_settings("amqp://localhost/", tmp_path, host="0.0.0.0")
    assert refusal(open_host) is not None and "AGG_API_KEYS_FILE" in str(refusal(open_host))
    assert refusal(open_host.model_copy(update={"auth": "off"})) is None
    assert refusal(open_host.model_copy(update={"api_keys_file": tmp_path / "k"})) is None
    for loopback in ("127.0.0.1", "localhost", "::1"):
        assert refusal(open_host.model_copy(update={"host": loopback})) is None
    assert Settings.model_fields["host"].default == "127.0.0.1"


@pytest.fixture
async def keyed(amqp_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    keys = tmp_path / "keys.toml"
    keys.write_text(keys_toml())
    settings = make_settings(amqp_url, tmp_path, api_keys_file=keys, rate_limit=500)
    yield settings
    await delete_topology(settings)


@pytest.mark.broker
async def test_every_refusal_publishes_nothing(keyed: Settings) -> None:
    async with api_client(keyed) as client:
        event = event_body("e", "billing.invoice")
        response = await client.post("/publish", json=event)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        response = await client.post("/publish", json=event, headers={"X-API-Key": "wrong"})
        assert response.status_code == 401
        response = await client.post("/publish", json=event, headers=bearer("reader"))
        assert response.status_code == 403 and "'publish' scope" in response.json()["detail"]
        # One event outside the key's topics: the whole batch is refused, naming it.
        batch = [event_body("1", "billing.a"), event_body("2", "auth.login")]
        response = await client.post("/publish", json=batch, headers=bearer("billing"))
        assert response.status_code == 403
        assert "'auth.login'" in response.json()["detail"]
        assert await queue_depth(keyed, keyed.queue) == 0
        # Reading needs the read scope; probes and metrics need nothing.
        assert (await client.get("/stats")).status_code == 401
        assert (await client.get("/events", headers=bearer("writer"))).status_code == 403
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200, path


@pytest.mark.broker
async def test_the_publishing_keys_name_is_stored_with_each_event(keyed: Settings) -> None:
    async with running_worker(keyed), api_client(keyed) as client:
        response = await client.post(
            "/publish",
            json=[event_body("b-1", "billing.invoice"), event_body("b-2", "audit.login")],
            headers={"X-API-Key": TOKENS["billing"]},
        )
        assert response.status_code == 202, response.text
        response = await client.post("/publish", json=event_body("w-1"), headers=bearer("writer"))
        assert response.status_code == 202, response.text

        async def page() -> list[dict[str, object]]:
            events: list[dict[str, object]] = (
                await client.get("/events", headers=bearer("reader"))
            ).json()["events"]
            return events

        events = await eventually(page, lambda e: len(e) == 3, what="three events stored")
        publishers = {str(e["event_id"]): e["publisher"] for e in events}
        assert publishers == {"b-1": "billing", "b-2": "billing", "w-1": "writer"}


@pytest.mark.broker
async def test_keys_rotate_without_a_restart(keyed: Settings) -> None:
    assert keyed.api_keys_file is not None
    async with api_client(keyed) as client:
        assert (await client.get("/stats", headers=bearer("reader"))).status_code == 200
        rotated = {**TOKENS, "reader": "r-secret-2"}
        keyed.api_keys_file.write_text(keys_toml(rotated))
        # A change on disk is noticed within a second, at the next request.
        await eventually(
            lambda: client.get("/stats", headers=bearer("reader")),
            lambda r: r.status_code == 401,
            what="the old token refused",
        )
        new = {"Authorization": "Bearer r-secret-2"}
        assert (await client.get("/stats", headers=new)).status_code == 200
        # SIGHUP reads it at once; a file that does not parse keeps the keys in force.
        keyed.api_keys_file.write_text("not = [toml")
        os.kill(os.getpid(), signal.SIGHUP)
        assert (await client.get("/stats", headers=new)).status_code == 200


@pytest.mark.broker
async def test_past_the_rate_limit_429_with_retry_after(keyed: Settings) -> None:
    async with api_client(keyed) as client:
        batch = [event_body(str(i), "billing.x") for i in range(400)]
        assert (
            await client.post("/publish", json=batch, headers=bearer("billing"))
        ).status_code == 202
        response = await client.post("/publish", json=batch, headers=bearer("billing"))
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        # Another key has its own bucket.
        small = [event_body(str(i), "other") for i in range(10)]
        assert (
            await client.post("/publish", json=small, headers=bearer("writer"))
        ).status_code == 202
