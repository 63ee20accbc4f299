"""What can be checked of the container set-up without a Docker engine, and the two commands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from aggregator.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_compose_services_ports_and_health_ordering() -> None:
    services = compose()["services"]
    assert set(services) == {"rabbitmq", "worker", "api"}
    rabbit = services["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:3-management")
    assert "15672:15672" in rabbit["ports"]
    assert "rabbitmq-diagnostics" in rabbit["healthcheck"]["test"]
    assert "8080:8080" in services["api"]["ports"]
    for name in ("worker", "api"):
        service = services[name]
        assert service["build"] == "."
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert service["command"] == ["python", "-m", name]


def test_compose_keeps_the_store_on_a_named_volume_shared_by_api_and_worker() -> None:
    document = compose()
    mounts = {
        name: [m for m in document["services"][name]["volumes"] if m.endswith(":/data")]
        for name in ("worker", "api")
    }
    assert mounts["worker"] == mounts["api"] and len(mounts["api"]) == 1
    volume = mounts["api"][0].split(":")[0]
    assert volume in document["volumes"]
    for name in ("worker", "api"):
        env = document["services"][name]["environment"]
        assert env["AGG_DB_PATH"].startswith("/data/")
        assert env["AGG_AMQP_URL"].startswith("amqp://") and "@rabbitmq:" in env["AGG_AMQP_URL"]


def test_compose_environment_names_are_real_settings() -> None:
    known = {f"AGG_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("AGG_"):
                assert key in known, f"{name}: {key} is not a setting"


def test_dockerfile_layers_user_and_health() -> None:
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    assert instructions[0][0] == "FROM" and "slim" in instructions[0][1]
    env = " ".join(arg for kind, arg in instructions if kind == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    copies = [arg for kind, arg in instructions if kind == "COPY"]
    runs = [arg for kind, arg in instructions if kind == "RUN"]
    # Dependencies are installed from pyproject.toml before any code is copied in.
    deps_run = next(
        i for i, (k, a) in enumerate(instructions) if k == "RUN" and "requirements" in a
    )
    first_code_copy = next(
        i
        for i, (k, a) in enumerate(instructions)
        if k == "COPY" and re.match(r"(aggregator|api|worker)\b", a)
    )
    assert copies[0].startswith("pyproject.toml")
    assert deps_run < first_code_copy
    assert any("--no-deps" in r for r in runs)
    user = [arg for kind, arg in instructions if kind == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert kinds.index("USER") > first_code_copy
    assert "HEALTHCHECK" in kinds
    assert instructions[-1] == ("CMD", '["python", "-m", "api"]')


def test_ci_and_readme_use_the_same_two_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
