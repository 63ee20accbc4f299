"""Reading through the API as a client does: ``/stats`` (waited on with a deadline), and
``/events`` page by page."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.waiting import eventually


async def stats_of(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/stats")
    assert response.status_code == 200
    stats: dict[str, Any] = response.json()
    return stats


async def wait_for_stats(
    client: httpx.AsyncClient, *, received: int, timeout: float = 20.0
) -> dict[str, Any]:
    return await eventually(
        lambda: stats_of(client),
        lambda s: s["received"] >= received,
        timeout=timeout,
        what=f"received >= {received}",
    )


async def all_events(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"after": cursor} if cursor else {})}
        response = await client.get("/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        cursor = page["next"]
        if cursor is None:
            return events
