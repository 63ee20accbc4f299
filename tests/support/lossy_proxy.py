"""An HTTP proxy that loses answers: the request reaches the API, its answer never reaches the
client. What a cut connection or a timeout does to a log shipper, which then sends again.

``fates`` decides each request's answer in turn: ``"drop"`` closes the connection without an
answer, ``"503"`` answers 503 with ``Retry-After`` in place of the API's answer; once they are
used up, answers pass through. ``records`` counts the OTLP log records of every request it
forwarded, so a test knows how many deliveries to wait for.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from aggregator.otlp import count_records

FORWARDED_HEADERS = ("content-type", "content-encoding", "authorization", "x-api-key")


class LossyProxy:
    def __init__(self, target: str, fates: list[str], retry_after_s: int = 1) -> None:
        self.target = target
        self.fates = list(fates)
        self.retry_after_s = retry_after_s
        self.answers: list[tuple[int, str]] = []  # (the API's status, what the client got)
        self.records = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k: v for k in FORWARDED_HEADERS if (v := self.headers.get(k))}
                answer = httpx.post(proxy.target + self.path, content=body, headers=headers)
                with proxy._lock:
                    proxy.records += _records(body, headers)
                    fate = proxy.fates.pop(0) if proxy.fates else "pass"
                    proxy.answers.append((answer.status_code, fate))
                if fate == "drop":
                    self.close_connection = True  # no answer at all
                    return
                status = 503 if fate == "503" else answer.status_code
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", str(proxy.retry_after_s))
                self.send_header("Content-Type", answer.headers.get("content-type", "text/plain"))
                content = b"" if fate == "503" else answer.content
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test reads `answers`

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _records(body: bytes, headers: dict[str, str]) -> int:
    if headers.get("content-type") != "application/x-protobuf":
        return 0
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return count_records(ExportLogsServiceRequest.FromString(body))
