"""Settings read from the environment: which store, and where."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aggregator.settings import Settings, store_target


def test_the_store_defaults_to_sqlite_at_the_db_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGG_STORE_URL", raising=False)
    monkeypatch.delenv("AGG_DB_PATH", raising=False)
    assert Settings().effective_store_url == "sqlite:///data/aggregator.db"
    monkeypatch.setenv("AGG_DB_PATH", "/var/lib/agg/events.db")
    settings = Settings()
    assert settings.effective_store_url == "sqlite:////var/lib/agg/events.db"
    assert store_target(settings.effective_store_url) == ("sqlite", "/var/lib/agg/events.db")


def test_agg_store_url_names_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGG_STORE_URL", "postgresql://agg:secret@db:5432/agg")
    monkeypatch.setenv("AGG_STORE_POOL_SIZE", "8")
    settings = Settings()
    assert settings.store_pool_size == 8
    assert store_target(settings.effective_store_url) == (
        "postgresql",
        "postgresql://agg:secret@db:5432/agg",
    )
    assert store_target("postgres://db/agg")[0] == "postgresql"
    assert store_target("sqlite:///relative/a.db") == ("sqlite", "relative/a.db")
    assert store_target("SQLite:////abs/a.db") == ("sqlite", "/abs/a.db")


@pytest.mark.parametrize(
    "url",
    [
        "mysql://agg:secret@db/agg",
        "sqlite://relative.db",  # two slashes: a host, not a path
        "sqlite:///",
        "postgresql://",
        "/just/a/path.db",
    ],
)
def test_an_unknown_store_url_names_the_variable_not_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("AGG_STORE_URL", url)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "AGG_STORE_URL must be sqlite:///PATH or postgresql://" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_the_db_path_still_works_beside_an_unset_store_url(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "a.db")
    assert store_target(settings.effective_store_url) == ("sqlite", str(tmp_path / "a.db"))
    empty = Settings(db_path=tmp_path / "a.db", store_url="")  # AGG_STORE_URL= counts as unset
    assert empty.store_url is None
    assert empty.effective_store_url == settings.effective_store_url
