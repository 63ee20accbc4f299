"""TLS to the broker: amqps:// with our CA and a client certificate, against a private node."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aggregator.connection import connect
from aggregator.errors import BrokerUnreachable
from aggregator.store import SqliteStore
from tests.conftest import make_settings
from tests.support.broker import event_body
from tests.support.processes import free_port, start_api, start_worker
from tests.support.rabbit_node import RabbitNode
from tests.support.tls import Authority, make_authority
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return make_authority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_node(
    tmp_path_factory: pytest.TempPathFactory, authority: Authority
) -> Iterator[tuple[RabbitNode, int]]:
    """A private node with a TLS listener that asks for, and checks, a client certificate."""
    port = free_port()
    with RabbitNode(
        tmp_path_factory.mktemp("tls-node"),
        extra_config=[
            f"listeners.ssl.default = 127.0.0.1:{port}",
            f"ssl_options.cacertfile = {authority.ca.cert}",
            f"ssl_options.certfile = {authority.server.cert}",
            f"ssl_options.keyfile = {authority.server.key}",
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = true",
        ],
    ) as node:
        yield node, port


@pytest.mark.timeout(120)
async def test_the_api_and_the_worker_over_tls(
    tls_node: tuple[RabbitNode, int], authority: Authority, tmp_path: Path
) -> None:
    _, port = tls_node
    settings = make_settings(
        f"amqps://guest:guest@localhost:{port}/",
        tmp_path,
        host="127.0.0.1",
        port=free_port(),
        amqp_ca_file=authority.ca.cert,
        amqp_cert_file=authority.client.cert,
        amqp_key_file=authority.client.key,
    )
    store = await SqliteStore.open(settings.db_path)
    try:
        with (
            start_worker(settings, tmp_path / "worker.log"),
            start_api(settings, tmp_path / "api.log") as api,
        ):
            async with httpx.AsyncClient(base_url=api.base_url) as client:
                ready = await eventually(
                    lambda: client.get("/readyz"), lambda r: r.status_code == 200, what="ready"
                )
                assert ready.json() == {"broker": "ok", "store": "ok"}
                batch = [event_body(f"tls-{i}") for i in range(50)]
                assert (await client.post("/publish", json=batch)).status_code == 202
                await eventually(store.stats, lambda s: s.unique_processed == 50, what="stored")
    finally:
        await store.close()


@pytest.mark.timeout(60)
async def test_no_client_certificate_or_an_unknown_ca_is_refused(
    tls_node: tuple[RabbitNode, int], authority: Authority, tmp_path: Path
) -> None:
    _, port = tls_node
    url = f"amqps://guest:guest@localhost:{port}/"
    without_cert = make_settings(url, tmp_path, amqp_ca_file=authority.ca.cert)
    with pytest.raises(BrokerUnreachable):
        await connect(without_cert, client_name="test", give_up_after_s=0)
    other = make_authority(tmp_path / "other", "other-ca")
    wrong_ca = make_settings(
        url,
        tmp_path,
        amqp_ca_file=other.ca.cert,
        amqp_cert_file=authority.client.cert,
        amqp_key_file=authority.client.key,
    )
    with pytest.raises(BrokerUnreachable, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        await asyncio.wait_for(connect(wrong_ca, client_name="test", give_up_after_s=0), 30)
