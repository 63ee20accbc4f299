"""The image's healthcheck: what each service's container asks, found from its command line and
settings, and the logic run against real sockets."""

from __future__ import annotations

import http.server
import importlib.util
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aggregator.healthcheck import WORKER_METRIC, Probe, answers, module_of, probes_for
from aggregator.settings import Settings
from tests.support.deployment import (
    RABBIT_NODES,
    compose,
    dockerfile_instructions,
    index_of,
    service_settings,
)
from tests.support.processes import free_port


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
