"""The HTTP app: ``/predict``, ``/predict_batch`` and ``/model``, with errors a client can act on.

BentoML serves it mounted at ``/`` and answers ``/readyz``, ``/livez`` and ``/metrics`` itself.
Every refusal is a JSON :class:`~services.serving.schema.ErrorResponse` naming the bad fields:

- a body over ``max_body_bytes``: 413;
- malformed JSON, a missing or wrong field, a NaN or infinite amount: 422;
- no champion loaded yet, or the online store down: 503.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bottega.asgi import BodyLimit
from bottega.errors import BottegaError
from services.serving.metrics import ServingMetrics
from services.serving.models import ModelSlots
from services.serving.predictor import Predictor
from services.serving.schema import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    FieldError,
    ModelReport,
    PredictRequest,
    PredictResponse,
    ServedModel,
)

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": why}
    for code, why in (
        (413, "The body is over the size limit."),
        (422, "The body is not valid JSON, or a field is missing or wrong."),
        (503, "No champion is loaded yet, or the online store is down."),
    )
}


def too_large(limit: int) -> bytes:
    """The 413 body: an :class:`ErrorResponse` naming the body."""
    return (
        ErrorResponse(
            error=f"the request body is over the limit of {limit} bytes",
            fields=[FieldError(field="body", message="too large")],
        )
        .model_dump_json()
        .encode()
    )


def field_errors(exc: RequestValidationError) -> list[FieldError]:
    """Each invalid field, by its dotted path inside the body."""
    out = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        # A JSON syntax error's location is a character offset, not a field.
        where = "body" if error.get("type") == "json_invalid" else ".".join(loc) or "body"
        out.append(FieldError(field=where, message=str(error.get("msg", ""))))
    return out


def build_app(
    predictor: Predictor,
    slots: ModelSlots,
    metrics: ServingMetrics,
    *,
    device: str,
    max_batch: int,
    max_body_bytes: int,
) -> FastAPI:
    """The app over one worker's predictor and model slots."""
    app = FastAPI(
        title="Bottega model server",
        description="Scores card transactions with the fraud-detector champion.",
        version="1",
        docs_url="/api",
        redoc_url=None,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.requests_rejected.labels("invalid").inc()
        fields = field_errors(exc)
        body = ErrorResponse(
            error="invalid request: " + "; ".join(f"{f.field}: {f.message}" for f in fields),
            fields=fields,
        )
        return JSONResponse(json.loads(body.model_dump_json()), status_code=422)

    @app.exception_handler(BottegaError)
    async def failed(_: Request, exc: BottegaError) -> JSONResponse:
        body = ErrorResponse(error=str(exc))
        return JSONResponse(body.model_dump(), status_code=exc.http_status)

    # The predict handlers are coroutines on purpose: a call is about a millisecond of CPU
    # under the GIL, so running it on the event loop beats a hop to the thread pool and back.
    @app.post("/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(txn: PredictRequest) -> PredictResponse:
        """Score one transaction, sent as a flat JSON object."""
        return predictor.predict([txn])[0]

    @app.post("/predict_batch", response_model=BatchResponse, responses=ERRORS)
    async def predict_batch(batch: BatchRequest) -> BatchResponse | JSONResponse:
        """Score several transactions in one lookup and one model call."""
        if len(batch.transactions) > max_batch:
            metrics.requests_rejected.labels("invalid").inc()
            body = ErrorResponse(
                error=f"at most {max_batch} transactions per batch",
                fields=[FieldError(field="transactions", message=f"more than {max_batch}")],
            )
            return JSONResponse(body.model_dump(), status_code=422)
        return BatchResponse(predictions=predictor.predict(batch.transactions))

    @app.get("/model", response_model=ModelReport)
    def model() -> ModelReport:
        """The versions this worker serves, the registry's aliases, the device and the state."""
        champion, challenger = slots.champion, slots.challenger
        state = "no_model" if champion is None else "degraded" if slots.degraded else "serving"
        return ModelReport(
            state=state,
            device=device,
            champion=_served(champion),
            challenger=_served(challenger),
            aliases=dict(slots.aliases),
            registry_reachable=slots.registry_reachable,
            worker_pid=os.getpid(),
        )

    app.add_middleware(
        BodyLimit,
        limit=max_body_bytes,
        on_reject=lambda: metrics.requests_rejected.labels("too_large").inc(),
        body=too_large,
    )
    return app


def _served(model: Any) -> ServedModel | None:
    if model is None:
        return None
    return ServedModel(
        name=model.name,
        version=model.version,
        alias=model.alias,
        source=model.source,
        loaded_at=model.loaded_at,
    )
