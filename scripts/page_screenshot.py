"""Make ``docs/page.png``, the README's picture of the page at ``/``.

A worker and the API on an exchange and a store of their own, a minute of traffic at a rate
that rises and falls (some duplicates among it, one poison message), then the page in Debian's
chromium, headless, like tests/test_page.py. Run from the repository's root:

    .venv/bin/python scripts/page_screenshot.py [docs/page.png]
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator.settings import Settings  # noqa: E402
from tests.support.broker import delete_topology, publish_raw  # noqa: E402
from tests.support.processes import free_port, start_api, start_worker  # noqa: E402
from tests.test_page import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SECONDS = 60
SOURCES: dict[str, tuple[str, Callable[[int], dict[str, object]]]] = {
    "auth.login": ("svc-auth", lambda n: {"user": f"user{n % 40}", "ok": n % 9 != 0}),
    "billing.paid": ("svc-billing", lambda n: {"invoice": f"INV-{n:05d}", "cents": 100 * n}),
    "api.request": (
        "gateway",
        lambda n: {"path": random.choice(["/orders", "/cart", "/login"]), "status": 200},
    ),
}


def event(n: int) -> dict[str, object]:
    topic = random.choice(list(SOURCES))
    source, payload = SOURCES[topic]
    return {
        "topic": topic,
        "event_id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "source": source,
        "payload": payload(n),
    }


async def traffic(base_url: str) -> None:
    """A batch every 0.2 s, its size following a slow wave; one event in 20 sent twice."""
    sent: list[dict[str, object]] = []
    async with httpx.AsyncClient(base_url=base_url) as client:
        started = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - started) < SECONDS:
            size = int(12 + 10 * math.sin(elapsed / 9))
            batch = [event(n + i) for i in range(size)]
            n += size
            batch += random.sample(sent, k=min(len(sent), size // 20))
            sent = (sent + batch)[-500:]
            (await client.post("/publish", json=batch)).raise_for_status()
            await asyncio.sleep(0.2)


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        name = f"page-{uuid.uuid4().hex[:8]}"
        settings = Settings.model_validate(
            {
                "db_path": Path(tmp) / "aggregator.db",
                "exchange": name,
                "queue": f"{name}.q",
                "port": free_port(),
                "metrics_port": 0,
                "metrics_interval_s": 1.0,
            }
        )
        try:
            with (
                start_worker(settings, Path(tmp) / "worker.log"),
                start_api(settings, Path(tmp) / "api.log") as api,
            ):
                await publish_raw(settings, [("auth.login", b'{"topic": "auth.login", "event')])
                await traffic(api.base_url)
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                    )
                    page = await browser.new_page(viewport={"width": 1300, "height": 1000})
                    await page.goto(api.base_url + "/")
                    await page.wait_for_selector("#event-rows tr")
                    await page.locator("#event-rows tr").nth(2).click()
                    await page.wait_for_selector("#detail-json:not(:empty)")
                    await page.click("#dead-refresh")
                    await page.wait_for_selector("#dead-list li")
                    await page.evaluate("window.scrollTo(0, 0)")
                    out.write_bytes(await page.screenshot())
                    await browser.close()
        finally:
            await delete_topology(settings)
    print(f"wrote {out}")  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/page.png")))
