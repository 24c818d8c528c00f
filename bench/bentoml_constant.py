"""A reference for the serving benchmark: the HTTP floor's constant endpoint behind BentoML.

The same Starlette app as ``bench.serving_refs.floor_app``, mounted at ``/`` as the model server
mounts its app, and served by ``bentoml serve`` with the model server's number of workers: what
BentoML's own stack (its ASGI middleware, tracing, metrics, worker processes) costs at a rate,
with no features, no model and no prediction log.
"""

from __future__ import annotations

import bentoml

from bench.serving_refs import floor_app

SERVICE = "bench.bentoml_constant:ConstantService"
SERVICE_NAME = "bench_constant"


@bentoml.service(name=SERVICE_NAME, traffic={"timeout": 30})
@bentoml.asgi_app(floor_app, path="/")
class ConstantService:
    """Answers ``POST /predict`` with a constant."""
