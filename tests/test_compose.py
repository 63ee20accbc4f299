"""The compose files, parsed as docker compose reads them and held against the settings class and
the Dockerfile: services, the cluster profile, scaling, the store's volume, secrets by default,
the PostgreSQL file. No Docker engine is needed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from yarl import URL

from aggregator.settings import Settings
from api.keys import parse_keys, token_digest
from tests.support.deployment import (
    COMPOSE_ENV,
    RABBIT_NODES,
    ROOT,
    compose,
    dockerfile_instructions,
    index_of,
    raw_compose,
    service_settings,
)


def test_compose_services_ports_and_health_ordering() -> None:
    services = compose()["services"]
    assert set(services) == {"rabbitmq", "rabbitmq-2", "rabbitmq-3", "worker", "api"}
    # Without a profile: one node, the worker and the API.
    assert {name for name, s in services.items() if not s.get("profiles")} == {
        "rabbitmq",
        "worker",
        "api",
    }
    rabbit = services["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:4")
    assert "127.0.0.1:15672:15672" in rabbit["ports"]
    assert "127.0.0.1:8080:8080" in services["api"]["ports"]
    for name in ("worker", "api"):
        service = services[name]
        assert service["build"] == "."
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert service["command"] == ["python", "-m", name]


def test_the_cluster_profile_forms_one_cluster_the_processes_fail_over_in() -> None:
    services = compose()["services"]
    nodes = [services[name] for name in RABBIT_NODES]
    assert len({node["image"] for node in nodes}) == 1
    # One cookie for every node and its CLI (the healthcheck), or they cannot talk.
    cookies = {node["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] for node in nodes}
    assert len(cookies) == 1 and "-setcookie" in cookies.pop()
    assert all(n["environment"]["RABBITMQ_CTL_ERL_ARGS"].startswith("-setcookie") for n in nodes)
    # Nodes 2 and 3 (cluster profile only) list all three by their node names, and join
    # node 1 once it is healthy; every node grows quorum queues to three replicas.
    peers = (ROOT / "deploy/rabbitmq/20-cluster.conf").read_text()
    listed = re.findall(r"classic_config\.nodes\.\d+ = rabbit@(\S+)", peers)
    assert listed == [node["hostname"] for node in nodes]
    for name in RABBIT_NODES[1:]:
        assert services[name]["profiles"] == ["cluster"]
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert any(v.endswith("/conf.d/20-cluster.conf:ro") for v in services[name]["volumes"])
    assert not any("20-cluster.conf" in v for v in services["rabbitmq"]["volumes"])
    for node in nodes:
        mounts = [v.split(":")[0] for v in node["volumes"] if v.startswith("./")]
        assert all((ROOT / mount).is_file() for mount in mounts), mounts
        assert "./deploy/rabbitmq/10-quorum.conf" in mounts
    assert "target_group_size = 3" in (ROOT / "deploy/rabbitmq/10-quorum.conf").read_text()
    # The API and the worker know every node, in both set-ups.
    for name in ("api", "worker"):
        urls = Settings(amqp_url=services[name]["environment"]["AGG_AMQP_URL"]).amqp_urls
        assert [URL(url).host for url in urls] == [node["hostname"] for node in nodes]


def test_the_worker_scales_without_host_ports_and_names() -> None:
    worker = compose()["services"]["worker"]
    # `--scale worker=3` cannot bind one host port three times, nor reuse a container name.
    assert "ports" not in worker, "a fixed host port breaks --scale worker=N"
    assert "container_name" not in worker


def test_compose_keeps_the_store_on_a_named_volume_shared_by_api_and_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = compose()
    mounts = {
        name: [m for m in document["services"][name]["volumes"] if m.endswith(":/data")]
        for name in ("worker", "api")
    }
    assert mounts["worker"] == mounts["api"] and len(mounts["api"]) == 1
    volume = mounts["api"][0].split(":")[0]
    assert volume in document["volumes"]
    for name in ("worker", "api"):
        settings = service_settings(name, monkeypatch)
        assert settings.db_path.parent == Path("/data"), settings.db_path
        assert settings.amqp_url.startswith("amqp://") and "@rabbitmq:" in settings.amqp_url
    instructions = dockerfile_instructions()
    # The mount point is declared, and owned by the non-root user before it is (Docker copies
    # the image's /data, owner included, into a new named volume).
    volume_at = index_of(instructions, "VOLUME", r'"/data"')
    assert index_of(instructions, "RUN", r"mkdir /data\b.*chown \S+ /data") < volume_at


def test_compose_environment_names_are_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    known = {f"AGG_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("AGG_"):
                assert key in known, f"{name}: {key} is not a setting"
    for name in ("api", "worker"):
        service_settings(name, monkeypatch)  # and their values are valid ones


def test_secure_by_default_never_guest_and_keys_from_a_mounted_file() -> None:
    services = compose()["services"]
    # No guest account anywhere (the comments may say so).
    assert "guest" not in str(raw_compose())
    # Every published port listens on loopback unless BIND_ADDRESS says otherwise.
    published = [port for s in services.values() for port in s.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published)
    opened = compose({**COMPOSE_ENV, "BIND_ADDRESS": "0.0.0.0"})["services"]
    assert all(p.startswith("0.0.0.0:") for s in opened.values() for p in s.get("ports", []))
    # No .env: compose stops and says what to run, rather than start with a default password.
    with pytest.raises(AssertionError, match="compose-env.sh"):
        compose({})
    for node in RABBIT_NODES:
        environment = services[node]["environment"]
        assert environment["RABBITMQ_DEFAULT_PASS"] == COMPOSE_ENV["RABBITMQ_PASSWORD"]
    api = services["api"]
    assert api["environment"]["AGG_API_KEYS_FILE"] == "/run/secrets/api-keys"
    assert api["secrets"] == ["api-keys"]
    assert raw_compose()["secrets"]["api-keys"]["file"] == "./deploy/api-keys.toml"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {".env", "deploy/api-keys.toml", "deploy/api-token.txt"} <= set(ignored)


def test_compose_env_makes_working_secrets_once(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "deploy").mkdir()
    script = tmp_path / "scripts" / "compose-env.sh"
    script.write_text((ROOT / "scripts" / "compose-env.sh").read_text())
    subprocess.run(["bash", str(script)], check=True, capture_output=True)
    env = dict(
        line.split("=", 1)
        for line in (tmp_path / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(env) == set(COMPOSE_ENV) and env["RABBITMQ_PASSWORD"] != "guest"
    assert len(env["RABBITMQ_PASSWORD"]) >= 32
    token = (tmp_path / "deploy" / "api-token.txt").read_text().strip()
    [key] = parse_keys((tmp_path / "deploy" / "api-keys.toml").read_text(), "api-keys.toml")
    assert key.digest == token_digest(token) and key.scopes == {"publish", "read", "admin"}
    before = (tmp_path / ".env").read_text(), (tmp_path / "deploy" / "api-keys.toml").read_text()
    subprocess.run(["bash", str(script)], check=True, capture_output=True)
    after = (tmp_path / ".env").read_text(), (tmp_path / "deploy" / "api-keys.toml").read_text()
    assert before == after  # nothing rotates by running it again
    # The URLs the processes get carry the password from .env and pass the settings' checks.
    urls = Settings(amqp_url=compose(env)["services"]["api"]["environment"]["AGG_AMQP_URL"])
    assert all(URL(url).password == env["RABBITMQ_PASSWORD"] for url in urls.amqp_urls)


def test_the_postgres_file_puts_every_worker_and_the_api_on_one_database() -> None:
    services = compose(COMPOSE_ENV, "docker-compose.postgres.yml")["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert postgres["healthcheck"]["test"][1] == "pg_isready"
    assert any(volume.startswith("postgres-data:") for volume in postgres["volumes"])
    urls = set()
    for name in ("api", "worker"):
        service = services[name]
        # Both dependencies, merged: the broker's and the database's.
        assert set(service["depends_on"]) == {"rabbitmq", "postgres"}
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        settings = Settings(store_url=service["environment"]["AGG_STORE_URL"])
        urls.add(settings.effective_store_url)
    [url] = urls
    assert URL(url).host == "postgres" and URL(url).password == COMPOSE_ENV["POSTGRES_PASSWORD"]
    # Still scalable: the worker keeps no host port and no container name.
    assert "ports" not in services["worker"] and "container_name" not in services["worker"]
    with pytest.raises(AssertionError, match="compose-env.sh"):
        compose({k: v for k, v in COMPOSE_ENV.items() if k != "POSTGRES_PASSWORD"},
                "docker-compose.postgres.yml")  # fmt: skip
