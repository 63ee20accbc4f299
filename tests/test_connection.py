"""Several broker URLs: the first that answers is used, passwords never shown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError
from yarl import URL

from aggregator.connection import close_quietly, connect
from aggregator.errors import BrokerUnreachable
from aggregator.urls import redacted
from tests.conftest import make_settings
from tests.support.ledger import current
from tests.support.processes import free_port
from tests.support.waiting import eventually


def test_every_password_of_a_list_is_redacted() -> None:
    urls = "amqp://u:secret1@node1:5672/,amqps://u:secret2@node2:5671/vhost,amqp://node3/"
    shown = redacted(urls)
    assert "secret" not in shown
    assert shown == "amqp://u:***@node1:5672/,amqps://u:***@node2:5671/vhost,amqp://node3/"


def test_a_list_of_urls_is_read_and_checked(tmp_path: Path) -> None:
    settings = make_settings(" amqp://a:1/ , amqp://b:2/,", tmp_path)
    assert settings.amqp_urls == ["amqp://a:1/", "amqp://b:2/"]
    with pytest.raises(ValidationError, match="AGG_AMQP_URL"):
        make_settings("amqp://a:1/,http://b:2/", tmp_path)
    with pytest.raises(ValidationError, match="names no broker"):
        make_settings(" , ", tmp_path)


@pytest.mark.broker
async def test_a_dead_first_node_is_skipped(amqp_url: str, tmp_path: Path) -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    settings = make_settings(f"{dead},{amqp_url}", tmp_path)
    connection = await connect(settings, client_name="test", give_up_after_s=5)
    try:
        live = URL(amqp_url)
        assert connection.node == f"{live.host}:{live.port}"
    finally:
        await close_quietly(connection)


async def test_no_node_answering_names_them_all_without_passwords(tmp_path: Path) -> None:
    urls = [f"amqp://guest:hunter2@127.0.0.1:{free_port()}/" for _ in range(2)]
    settings = make_settings(",".join(urls), tmp_path)
    with pytest.raises(BrokerUnreachable) as caught:
        await connect(settings, client_name="test", give_up_after_s=0)
    message = str(caught.value)
    assert "hunter2" not in message
    assert all(url.replace("hunter2", "***").rstrip("/") in message for url in urls)


def factory_tasks() -> list[asyncio.Task[object]]:
    """aio-pika's reconnect loops: one per robust connection that was not closed."""
    return [t for t in asyncio.all_tasks() if "connection_factory" in repr(t.get_coro())]


async def test_a_cancelled_first_connect_leaves_no_reconnect_loop_behind(tmp_path: Path) -> None:
    """A SIGTERM during the first connect once left aio-pika's reconnect task running; it
    swallows cancels, so the process never exited."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        settings = make_settings(
            f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/", tmp_path
        )
        connecting = asyncio.create_task(connect(settings, client_name="t", give_up_after_s=None))
        await eventually(lambda: current(factory_tasks()), bool, what="the first attempt under way")
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        await eventually(lambda: current(factory_tasks()), lambda tasks: not tasks, timeout=5,
                         what="no reconnect loop left")  # fmt: skip
