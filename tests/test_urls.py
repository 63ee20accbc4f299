"""URLs as logs and error messages show them."""

from __future__ import annotations

import pytest

from aggregator.urls import redacted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:guest@localhost:5672/", "amqp://guest:***@localhost:5672/"),
        ("amqp://localhost/", "amqp://localhost/"),
        ("amqp://a:b@h1/,amqp://c:d@h2/", "amqp://a:***@h1/,amqp://c:***@h2/"),
        ("postgresql://u:pw@db:5432/agg", "postgresql://u:***@db:5432/agg"),
        ("postgresql://u:pw@h1:5432,h2:5432/agg", "postgresql://u:***@h1:5432,h2:5432/agg"),
        (
            "postgres://u@db/agg?password=pw&sslmode=require",
            "postgres://u@db/agg?password=***&sslmode=require",
        ),
        # Not percent-encoded: the password holds "@", "/" and "#"; the last "@" ends it.
        ("postgresql://u:p@s/s#w@db/agg", "postgresql://u:***@db/agg"),
        ("sqlite:///data/aggregator.db", "sqlite:///data/aggregator.db"),
        ("not a url at all", "not a url at all"),
    ],
)
def test_passwords_are_never_shown(url: str, shown: str) -> None:
    assert redacted(url) == shown
