"""The page at ``/``, in a real browser: Debian's chromium driven by Playwright, headless.

Load it, read the counters, filter, search, open one event, publish one and see it appear, look
at the dead letters. The API and the worker run as processes, as a user runs them.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from aggregator.settings import Settings
from tests.support.broker import event_body, publish_raw
from tests.support.processes import free_port, start_api, start_worker
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CHROMIUM = os.environ.get("AGG_TEST_CHROMIUM", "/usr/bin/chromium")
# As root in a sandbox with no outside network: no sandbox, no GPU, nothing fetched at start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Where `AGG_SCREENSHOT=docs/page.png pytest tests/test_page.py` leaves the README's picture.
SCREENSHOT = os.environ.get("AGG_SCREENSHOT")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}: run `make test` (it installs chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


BIG = 2**53 + 1  # a JavaScript number would say ...992
# What an event could carry to run script in the page, were it put in as HTML.
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"


def events() -> list[dict[str, object]]:
    return [
        event_body("login-1", "auth.login", source="svc-auth", payload={"user": "alice"}),
        event_body("login-2", "auth.login", source="svc-auth", payload={"user": "bob"}),
        event_body(
            "pay-1",
            "billing.paid",
            source="svc-billing",
            payload={"note": "zanzibar invoice", "cents": BIG},
        ),
    ]


async def rows(page: Page) -> list[str]:
    texts: list[str] = await page.locator("#event-rows tr").all_inner_texts()
    return texts


@pytest.mark.timeout(180)
async def test_the_page_in_a_browser(browser: Browser, settings: Settings, tmp_path: Path) -> None:
    api_settings = settings.model_copy(update={"port": free_port()})
    with (
        start_worker(api_settings, tmp_path / "worker.log"),
        start_api(api_settings, tmp_path / "api.log") as api,
    ):
        async with httpx.AsyncClient(base_url=api.base_url) as client:
            await eventually(
                lambda: client.get("/readyz"), lambda r: r.status_code == 200, what="ready"
            )
            assert (await client.post("/publish", json=events())).status_code == 202
            await publish_raw(api_settings, [("app.log", b"not json at all")])
            await eventually(
                lambda: client.get("/stats"),
                lambda r: r.json()["unique_processed"] == 3 and r.json()["dead_lettered"] == 1,
                what="three events stored and one dead letter",
            )

        page = await browser.new_page(viewport={"width": 1300, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(api.base_url + "/")
        await expect(page.locator("#unique_processed")).to_have_text("3")
        await expect(page.locator("#dead_lettered")).to_have_text("1")
        await expect(page.locator("#event-rows tr")).to_have_count(3)
        # Newest first.
        assert "pay-1" in (await rows(page))[0]

        await page.fill("#filters input[name=topic]", "auth.login")
        await page.click("#filters button[type=submit]")
        await expect(page.locator("#event-rows tr")).to_have_count(2)
        assert all("auth.login" in text for text in await rows(page))

        await page.click("#filters button[type=reset]")
        await page.fill("#filters input[name=q]", "zanzibar")
        await page.click("#filters button[type=submit]")
        await expect(page.locator("#event-rows tr")).to_have_count(1)
        await page.locator("#event-rows tr").first.click()
        await expect(page.locator("#detail-json")).to_contain_text("zanzibar invoice")
        await expect(page.locator("#detail-json")).to_contain_text(str(BIG))

        await page.click("#filters button[type=reset]")
        body = await page.input_value("#publish-body")
        published_id = re.search(r'"event_id": "([^"]+)"', body)
        assert published_id is not None
        await page.click("#publish-form button[type=submit]")
        await expect(page.locator("#publish-result")).to_have_text("accepted 1")
        await expect(page.locator("#event-rows")).to_contain_text(published_id.group(1))

        await page.click("#dead-refresh")
        await expect(page.locator("#dead-count")).to_have_text("(1)")
        await expect(page.locator("#dead-list")).to_contain_text("not valid JSON")

        # Following: an event published elsewhere shows up by itself; as text, never as HTML.
        async with httpx.AsyncClient(base_url=api.base_url) as client:
            hostile = event_body("hostile-1", "web.page", source=HOSTILE, payload={"x": HOSTILE})
            assert (await client.post("/publish", json=hostile)).status_code == 202
        await expect(page.locator("#event-rows tr").first).to_contain_text(HOSTILE)
        await page.locator("#event-rows tr").first.click()
        await expect(page.locator("#detail-json")).to_contain_text("hostile-1")
        assert await page.locator("main img").count() == 0
        assert await page.title() == "Log Aggregator"

        assert not errors, errors
        shot = await page.screenshot(full_page=True)
        assert shot.startswith(b"\x89PNG")
        if SCREENSHOT:
            Path(SCREENSHOT).write_bytes(shot)
