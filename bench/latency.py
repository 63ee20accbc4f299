"""Single-event latency at a fixed rate: the raw gateway and the product API, a worker
draining behind each."""

from __future__ import annotations

from pathlib import Path

from aggregator.settings import Settings
from bench.figures import Figures, check, declare_plain, producer_args, raw_gateway_args
from bench.runner import delete_names, env_for, process, run_json, wait_http


async def latency(
    settings: Settings,
    rate: float,
    count: int,
    seed: int,
    work: Path,
    figures: Figures,
    *,
    raw_gateway: bool,
) -> None:
    env = env_for(settings)
    label = "raw" if raw_gateway else "product"
    if raw_gateway:
        await declare_plain(settings)
        server = raw_gateway_args(settings)
        health = f"http://127.0.0.1:{settings.port}/"
    else:
        server = ["-m", "api"]
        health = f"http://127.0.0.1:{settings.port}/readyz"
    with (
        process(server, env, work / f"{label}-latency-server.log") as api,
        process(["-m", "worker"], env, work / f"{label}-latency-worker.log"),
    ):
        wait_http(health, api)
        load = run_json(
            producer_args(
                f"http://127.0.0.1:{settings.port}",
                count,
                batch=1,
                concurrency=64,
                dup_rate=0,
                seed=seed,
                rate=rate,
            )
        )
    lat = load["latency_ms"]
    figures.add(f"{label}.latency_p50_ms", float(lat["p50"]))
    figures.add(f"{label}.latency_p99_ms", float(lat["p99"]))
    figures.add(f"{label}.latency_max_ms", float(lat["max"]))
    figures.add(f"{label}.latency_rate", float(load["events_per_s"]))
    check(figures, f"{label} latency confirmed", count, int(load["confirmed"]))
    await delete_names(settings)
