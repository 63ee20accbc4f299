"""Several broker URLs: the first that answers is used, passwords never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from yarl import URL

from aggregator.connection import close_quietly, connect
from aggregator.errors import BrokerUnreachable
from aggregator.urls import redacted
from tests.conftest import make_settings
from tests.support.processes import free_port


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
