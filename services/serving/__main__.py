"""``python -m services.serving``: become ``bentoml serve`` for the model server.

The command line and the environment come from :class:`ServingSettings`: the host and port,
the number of workers, where BentoML keeps its state (under the Bottega home), and bounded
MLflow client retries so that a registry outage is noticed in seconds. The process execs
``bentoml serve`` in place, so the pid the stack runner records is BentoML's main process.
"""

from __future__ import annotations

import os
import sys

from bottega.settings import load_settings
from services.serving.settings import ServingSettings

SERVICE = "services.serving.service:BottegaServing"
SERVICE_NAME = "bottega_serving"


def serve_command(settings: ServingSettings, service: str = SERVICE) -> list[str]:
    """The ``bentoml serve`` command line for ``settings`` (``service``: the benchmark serves
    its constant reference the same way)."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        service,
        "--host",
        settings.bind_host,
        "--port",
        str(settings.serving.port),
        "--working-dir",
        str(settings.project_root),
    ]


def serve_environment(settings: ServingSettings, name: str = SERVICE_NAME) -> dict[str, str]:
    """What ``bentoml serve`` and its workers need in their environment (``name``: the
    service's BentoML name)."""
    options = " ".join(
        [
            f"services.{name}.workers={settings.serve.workers}",
            # Each request is already logged by our metrics; an access log line per request
            # costs latency at hundreds of requests per second.
            f"services.{name}.logging.access.enabled=false",
        ]
    )
    if not settings.serve.trace_requests:
        # BentoML's OpenTelemetry middleware builds a span for every request, exported or
        # not: 2.4 ms of p99 at 200 requests a second in a scratch A/B (docs/serving.md). The
        # pattern excludes every URL.
        options += f" services.{name}.tracing.excluded_urls=.*"
    return {
        "BENTOML_HOME": str(settings.home / "bentoml"),
        "BENTOML_CONFIG_OPTIONS": options,
        "BENTOML_DO_NOT_TRACK": "true",
        # The MLflow client retries for minutes by default; the watcher retries on its own.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }


def main() -> None:
    """Exec ``bentoml serve`` with the settings' command line and environment."""
    settings = load_settings(ServingSettings)
    command = serve_command(settings)
    os.execve(command[0], command, {**os.environ, **serve_environment(settings)})


if __name__ == "__main__":
    main()
