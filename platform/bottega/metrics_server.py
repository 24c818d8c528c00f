"""A small HTTP server for a worker process: ``/metrics``, ``/livez`` and ``/readyz``.

Workers without an HTTP API of their own (the ingest) use it, so that Prometheus can scrape them
and the stack runner can wait on their readiness.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Scrapes every few seconds would drown the log."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request line naming HTTP/2 or later is the client's mistake: 400, as uvicorn
        answers it, not the standard library's 505."""
        bad_version = code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED
        super().send_error(HTTPStatus.BAD_REQUEST if bad_version else code, message, explain)


class MetricsServer:
    """Serves metrics and health in a background thread until :meth:`stop`."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, ready: Callable[[], bool]
    ) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
                # Read-only: nothing here takes a write.
                return _text(start_response, "405 Method Not Allowed", b"method not allowed\n")
            if path == "/livez":
                return _text(start_response, "200 OK", b"ok\n")
            if path == "/readyz":
                if ready():
                    return _text(start_response, "200 OK", b"ready\n")
                return _text(start_response, "503 Service Unavailable", b"not ready\n")
            if path == "/metrics":
                result: Iterable[bytes] = metrics_app(environ, start_response)
                return result
            return _text(start_response, "404 Not Found", b"not found\n")

        self._server = make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> MetricsServer:
        """Start serving in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _text(start_response: Callable[..., Any], status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
