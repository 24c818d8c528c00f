"""The HTTP app: ``/predict``, ``/predict_batch`` and ``/model``, with errors a client can act on.

BentoML serves it mounted at ``/`` and answers ``/readyz``, ``/livez`` and ``/metrics`` itself.
Every refusal is a JSON :class:`~services.serving.schema.ErrorResponse` naming the bad fields:

- a body over ``max_body_bytes``: 413;
- malformed JSON, a missing or wrong field, a NaN or infinite amount: 422;
- no champion loaded yet, or the online store down: 503.

The two scoring routes are FastAPI routes for their schema (``/openapi.json``, ``/api``), served
by :class:`JsonRoute`: pydantic parses and validates the raw body in one call and the answer is
serialized once. FastAPI's own handler parses the JSON in Python, validates it, validates the
answer again against the response model and encodes it through ``jsonable_encoder``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

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


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def json_route(model: type[BaseModel], answer: Callable[[Any], BaseModel | Response]) -> type:
    """An :class:`~fastapi.routing.APIRoute` whose handler validates the raw body as ``model``
    and answers with the JSON of ``answer(request)``.

    The route keeps its FastAPI declaration (body, response model, error responses), so the
    OpenAPI schema is unchanged; only the handler is replaced. An invalid body raises
    :class:`RequestValidationError` with each location under ``body``, as FastAPI's would, so
    the app's handler answers the same 422.
    """

    class JsonRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            async def handle(request: Request) -> Response:
                try:
                    parsed = model.model_validate_json(await request.body())
                except ValidationError as exc:
                    raise RequestValidationError(
                        [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
                    ) from None
                result = answer(parsed)
                if isinstance(result, Response):
                    return result
                return Response(result.model_dump_json(), media_type="application/json")

            return handle

    return JsonRoute


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

    # The scoring handlers run on the event loop: a call is a fraction of a millisecond of CPU
    # under the GIL, so running it there beats a hop to the thread pool and back.
    def predict(txn: PredictRequest) -> PredictResponse:
        """Score one transaction, sent as a flat JSON object."""
        return predictor.predict([txn])[0]

    def predict_batch(batch: BatchRequest) -> BatchResponse | JSONResponse:
        """Score several transactions in one lookup and one model call."""
        if len(batch.transactions) > max_batch:
            metrics.requests_rejected.labels("invalid").inc()
            body = ErrorResponse(
                error=f"at most {max_batch} transactions per batch",
                fields=[FieldError(field="transactions", message=f"more than {max_batch}")],
            )
            return JSONResponse(body.model_dump(), status_code=422)
        return BatchResponse(predictions=predictor.predict(batch.transactions))

    for path, endpoint, body, response in (
        ("/predict", predict, PredictRequest, PredictResponse),
        ("/predict_batch", predict_batch, BatchRequest, BatchResponse),
    ):
        app.router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            response_model=response,
            responses=ERRORS,
            route_class_override=json_route(body, endpoint),
        )

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
