"""Typed settings, read from ``AGG_*`` environment variables once, in each entry point."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aggregator.errors import AggregatorError
from aggregator.urls import redacted

# Most worker processes one `python -m worker` supervises (AGG_WORKERS, --workers).
MAX_WORKERS = 64

# AGG_RETENTION: a whole number and one unit, nothing else ("30d", "12h", "90m", "45s").
_DURATION = re.compile(r"([1-9][0-9]{0,9})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A century: more is a typo, and would overflow the store's microseconds.
MAX_RETENTION = timedelta(days=36500)


class Settings(BaseSettings):
    """Everything the API and the worker can be told; see the settings table in README.md."""

    # Inputs stay out of validation errors: a URL in one would show its password. AGG_X=
    # (empty, as compose's ${VAR:-} gives) means "not set": the default applies.
    model_config = SettingsConfigDict(
        env_prefix="AGG_",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    # One broker, or several nodes of a cluster, comma-separated: each process connects to the
    # first that answers and moves to the next when its node goes away.
    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    # AMQP heartbeat: how soon a silent link (a host cut off) is noticed, about 2-3 times this.
    heartbeat_s: int = Field(default=15, ge=0, le=600)
    # TLS to the broker (amqps:// URLs): the CA that signed the broker's certificate (else the
    # system's), and a client certificate and key where the broker asks for one.
    amqp_ca_file: Path | None = None
    amqp_cert_file: Path | None = None
    amqp_key_file: Path | None = None
    db_path: Path = Path("data/aggregator.db")
    # sqlite:///PATH (relative; sqlite:////PATH absolute) or postgresql://user:pass@host:port/db.
    # Unset: SQLite at db_path. See store_target.
    store_url: str | None = None
    # Connections each process (the API, every worker) keeps to a PostgreSQL store.
    store_pool_size: int = Field(default=4, ge=1, le=100)
    exchange: str = Field(default="logs", min_length=1, max_length=200)
    queue: str = Field(default="logs.aggregator", min_length=1, max_length=200)
    queue_type: Literal["quorum", "classic"] = "quorum"
    # Redeliveries a quorum queue allows before it dead-letters a message that keeps failing.
    delivery_limit: int = Field(default=20, ge=1)
    # Quorum queues: replicas when the queue is created (x-quorum-initial-group-size); unset,
    # the broker's default. Only applies to a new queue; see "Scaling out" in README.md.
    quorum_group_size: int | None = Field(default=None, ge=1)
    prefetch: int = Field(default=1000, ge=1, le=65535)

    # The API's address: loopback unless keys are configured (or AGG_AUTH=off says otherwise).
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # API keys (TOML, api/keys.py); unset, every caller may do everything, so the API then
    # refuses to listen beyond loopback unless auth is "off".
    api_keys_file: Path | None = None
    auth: Literal["on", "off"] = "on"
    # Events per second per key (per client address without keys); past it, 429.
    rate_limit: float | None = Field(default=None, gt=0)
    # Requests in flight past which the API answers 503 at once (probes excepted).
    max_concurrent_requests: int = Field(default=256, ge=1)
    # A request's headers must arrive within this of its first byte, its body within this.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=20.0, gt=0)
    # uvicorn's line per request: off by default (the counters are on /metrics); it costs more
    # CPU than the rest of a single-event request's logging.
    access_log: bool = False
    max_batch: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # The largest single event, as JSON re-encoded the way it is published and stored: 413 over
    # HTTP, dead-lettered over AMQP. Also bounds what one message costs the worker.
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024)
    # POST /ingest/{topic}: the record fields that give a wrapped record its timestamp (seconds
    # since 1970, or ISO 8601; Fluent Bit's "date" by default), its event id (unset: a hash of
    # the record) and its source (else "ingest"). A request may name others in its query.
    ingest_time_key: str = Field(default="date", min_length=1, max_length=255)
    ingest_id_key: str | None = Field(default=None, min_length=1, max_length=255)
    ingest_source_key: str | None = Field(default="host", min_length=1, max_length=255)
    # A publish answers 503 once no confirm came for this long while some are awaited (the
    # contract's 5 s bound on a broker that stopped answering); a large batch on a slow broker
    # may take longer in all, as long as confirms keep coming.
    confirm_timeout_s: float = Field(default=4.0, gt=0)

    # The worker stores up to batch_size deliveries and batch_bytes of bodies in one
    # transaction, waiting at most batch_ms for a batch to fill.
    batch_size: int = Field(default=500, ge=1)
    batch_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    batch_ms: float = Field(default=20.0, ge=0)
    # How long the worker keeps retrying its first connection before it gives up.
    connect_timeout_s: float = Field(default=60.0, ge=0)
    reconnect_interval_s: float = Field(default=1.0, gt=0)
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)

    # Worker processes `python -m worker` runs on this machine, sharing the one SQLite store
    # (WAL, busy timeout; each batch is one BEGIN IMMEDIATE transaction). Above 1 it supervises
    # that many children; `--workers N` overrides it. See "Scaling the worker" in README.md.
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)

    # The worker's own Prometheus endpoint (the API serves /metrics on its HTTP port); 0: off.
    # With N workers, child i serves metrics_port + i. The container healthcheck asks it.
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    # How often queue depth and consumer count are read from the broker for the gauges.
    metrics_interval_s: float = Field(default=5.0, gt=0)

    # Events whose own timestamp is older than this are deleted by the worker, a batch of
    # retention_batch per transaction, looked for every retention_interval_s; unset keeps
    # everything. Their keys stay seen for good: a replay is still a duplicate.
    retention: str | None = None
    retention_batch: int = Field(default=1000, ge=1, le=100_000)
    retention_interval_s: float = Field(default=60.0, gt=0)

    log_level: str = "INFO"

    @field_validator("amqp_url")
    @classmethod
    def _amqp_urls(cls, value: str) -> str:
        urls = [url.strip() for url in value.split(",") if url.strip()]
        if not urls:
            raise ValueError("AGG_AMQP_URL names no broker")
        for url in urls:
            if not url.startswith(("amqp://", "amqps://")):
                raise ValueError(f"AGG_AMQP_URL: {url.split('@')[-1]!r} is not an amqp:// URL")
        return ",".join(urls)

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str | None) -> str | None:
        if not value:
            return None
        parse_duration(value)
        return value

    @property
    def retention_period(self) -> timedelta | None:
        """AGG_RETENTION as a duration; None keeps everything."""
        return None if self.retention is None else parse_duration(self.retention)

    def as_environment(self) -> dict[str, str]:
        """The ``AGG_*`` variables that make another process read exactly these settings."""
        return {
            f"AGG_{name.upper()}": str(value)
            for name, value in self.model_dump().items()
            if value is not None  # unset: the other process's default, as here
        }

    @property
    def amqp_urls(self) -> list[str]:
        """Every broker URL of ``AGG_AMQP_URL``, in the order given."""
        return self.amqp_url.split(",")

    @field_validator("store_url")
    @classmethod
    def _known_store_scheme(cls, url: str | None) -> str | None:
        if not url:
            return None  # AGG_STORE_URL= (empty, as compose's ${AGG_STORE_URL:-}) is unset
        store_target(url)
        return url

    @property
    def effective_store_url(self) -> str:
        """AGG_STORE_URL, else the SQLite file at AGG_DB_PATH as a URL."""
        return self.store_url if self.store_url is not None else f"sqlite:///{self.db_path}"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"


def store_target(url: str) -> tuple[Literal["sqlite", "postgresql"], str]:
    """Which backend a store URL names, and what to open: a file path, or the URL for asyncpg.

    Raises ValueError naming AGG_STORE_URL (and never its password) for anything else.
    """
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if separator and scheme == "sqlite" and rest.startswith("/") and rest != "/":
        return "sqlite", rest[1:]
    if separator and scheme in ("postgresql", "postgres") and rest:
        return "postgresql", url
    raise ValueError(
        f"AGG_STORE_URL must be sqlite:///PATH or postgresql://user:password@host:port/database,"
        f" not {redacted(url)!r}"
    )


class SettingsError(AggregatorError):
    """The environment holds a setting the processes cannot use; one line per variable."""


def load_settings() -> Settings:
    """The settings from the environment, or :class:`SettingsError` naming each bad variable
    (without its value: a URL would show its password)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            name = "AGG_" + "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ").removeprefix(f"{name}: ")
            problems.append(f"{name}: {message}")
        raise SettingsError("; ".join(problems)) from None


def parse_duration(text: str) -> timedelta:
    """AGG_RETENTION's value as a duration; ValueError naming the variable for anything but a
    whole number of s, m, h or d (at most a century)."""
    match = _DURATION.fullmatch(text)
    period = None if match is None else timedelta(seconds=int(match[1]) * _UNIT_S[match[2]])
    if period is None or period > MAX_RETENTION:
        raise ValueError(
            "AGG_RETENTION must be a whole number followed by s, m, h or d, at most 36500d"
            f" (e.g. 30d, 12h, 90m), not {text!r}"
        )
    return period
