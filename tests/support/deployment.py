"""The compose files and the Dockerfile as docker would read them, with no Docker engine: compose's
interpolation and merge of files, the Dockerfile's instructions, the settings a service reads."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from aggregator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RABBIT_NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")


# What scripts/compose-env.sh writes to .env, as docker compose would read it.
COMPOSE_ENV = {
    "RABBITMQ_USER": "aggregator",
    "RABBITMQ_PASSWORD": "0123abcd",
    "RABBITMQ_ERLANG_COOKIE": "cookie",
    "POSTGRES_PASSWORD": "4567ef",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, in every string of ``value``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, kind, argument = match.groups()
        if env.get(name):
            return env[name]
        if kind == "-":
            return argument
        raise AssertionError(f"compose would stop: ${{{name}}} is unset ({argument})")

    return _VARIABLE.sub(one, value)


def raw_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def compose(env: dict[str, str] = COMPOSE_ENV, *extra: str) -> dict[str, Any]:
    """The compose file (and ``extra`` files over it, as ``-f a -f b`` does) as docker compose
    reads it with the .env compose-env.sh makes."""
    document = raw_compose()
    for name in extra:
        document = _merged(document, yaml.safe_load((ROOT / name).read_text()))
    interpolated: dict[str, Any] = interpolate(document, env)
    return interpolated


def _merged(base: Any, override: Any) -> Any:
    """Compose's merge of two files: mappings key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: _merged(base[k], v) if k in base else v for k, v in override.items()} | {
            k: v for k, v in base.items() if k not in override
        }
    return override


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    # Comment lines go first: a comment inside a continued instruction is not part of it.
    joined = "\n".join(line for line in lines if not line.startswith("#")).replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (line.strip() for line in joined.splitlines())
        if line
    ]


def index_of(instructions: list[tuple[str, str]], kind: str, pattern: str = "") -> int:
    """Position of the first ``kind`` instruction whose arguments match ``pattern``."""
    for position, (k, argument) in enumerate(instructions):
        if k == kind and re.search(pattern, argument):
            return position
    raise AssertionError(f"no {kind} matching {pattern!r} in the Dockerfile")


def service_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a service's container reads: the image's ENV, then the compose environment."""
    for key in [key for key in os.environ if key.startswith("AGG_")]:
        monkeypatch.delenv(key)
    for kind, argument in dockerfile_instructions():
        if kind == "ENV":
            for pair in shlex.split(argument):
                key, _, value = pair.partition("=")
                if key.startswith("AGG_"):
                    monkeypatch.setenv(key, value)
    for key, value in compose()["services"][name].get("environment", {}).items():
        monkeypatch.setenv(key, str(value))
    return Settings()
