"""The BentoML service that ``bentoml serve services.serving.service:BottegaServing`` runs.

Each worker builds its own :class:`~services.serving.runtime.ServingRuntime` in ``__init__``:
settings, logging, a warm feature store, its models. The HTTP routes live in a FastAPI app that
the runtime builds; the class mounts a small forwarding app at ``/`` so that the body stays a
flat JSON object (a ``@bentoml.api`` method would want ``{"txn": {...}}``). BentoML itself
answers ``/readyz`` (from :meth:`BottegaServing.__is_ready__`), ``/livez`` and ``/metrics``.
Adaptive batching is off: it answered 503s under load in our measurements.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import bentoml
from starlette.types import Receive, Scope, Send

from bottega.log import configure_logging
from bottega.settings import load_settings
from bottega.stack.process import exit_with_parent
from services.serving.runtime import ServingRuntime
from services.serving.settings import ServingSettings


class _WorkerApp:
    """Forwards each request to the app of the worker's service instance."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance: Any = bentoml.get_current_service()
        await instance.runtime.app(scope, receive, send)


@bentoml.service(name="bottega_serving", traffic={"timeout": 30})
@bentoml.asgi_app(_WorkerApp(), path="/")
class BottegaServing:
    """Scores card transactions with the fraud-detector champion."""

    def __init__(self) -> None:
        # Each worker runs in a session of its own: without this, a SIGKILL of ``bentoml
        # serve`` would leave the workers serving on its port, and no restart could bind it.
        exit_with_parent()
        settings = load_settings(ServingSettings)
        configure_logging(settings.log_level, settings.log_format)
        if not settings.serve.access_log:
            # uvicorn logs a line per request at INFO: tens of microseconds of the request's
            # own time, and hundreds of lines a second under load.
            logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        self.runtime = ServingRuntime.build(settings)
        # Everything built so far lives as long as the worker: moved out of the collector's
        # reach, a full collection no longer walks the imported libraries' objects on a
        # request's time.
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        """Ready once a champion is loaded."""
        return self.runtime.ready

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]
    def shutdown(self) -> None:
        """Stop the background threads and flush the prediction log."""
        self.runtime.stop()
