"""The trainer's HTTP API: Alertmanager's webhook, a manual trigger, the run history, metrics.

Every request that may change state (any method but GET, HEAD and OPTIONS: ``POST /webhook``,
``POST /retrain``) needs ``Authorization: Bearer <token>``. Without it the answer is 401, before
the body is read, and nothing is trained. A body over ``max_body_bytes`` is answered 413. The
webhook answers 2xx to every notification it understood,
deduplicated or not: a non-2xx answer would make Alertmanager send it again and again.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, SecretStr

from bottega.asgi import BearerGuard, BodyLimit
from services.trainer.alerts import Notification
from services.trainer.history import RunHistory
from services.trainer.metrics import TrainerMetrics
from services.trainer.retrainer import Outcome, Retrainer, Submission


class ManualRequest(BaseModel):
    """The body of ``POST /retrain``."""

    reason: str = "manual"


def build_app(
    retrainer: Retrainer,
    history: RunHistory,
    token: SecretStr,
    registry: CollectorRegistry,
    metrics: TrainerMetrics,
    *,
    max_body_bytes: int = 1024 * 1024,
) -> FastAPI:
    """The trainer's app, over the given retrainer, history and token."""
    app = FastAPI(title="Bottega trainer", docs_url=None, redoc_url=None)

    @app.post("/webhook")
    def webhook(notification: Notification) -> JSONResponse:
        names = notification.retrain_alerts()
        if not names:
            metrics.requests.labels("alert", "ignored").inc()
            return JSONResponse({"outcome": "ignored", "reason": "no firing retrain alert"})
        return answer(retrainer.submit("alert", names, reason=notification.groupKey))

    @app.post("/retrain")
    def retrain(request: ManualRequest | None = None) -> JSONResponse:
        reason = request.reason if request is not None else "manual"
        submission = retrainer.submit("manual", [], reason=reason)
        if submission.outcome is not Outcome.ACCEPTED:
            return answer(submission, refused=status.HTTP_409_CONFLICT)
        return answer(submission)

    @app.get("/runs")
    def runs() -> list[dict[str, Any]]:
        return history.as_json()

    @app.get("/runs/{run_id}")
    def run(run_id: str) -> dict[str, Any]:
        record = history.get(run_id)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no run {run_id}")
        return record.model_dump(mode="json")

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/livez")
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    # The last added runs first: the token is checked before the body is even counted.
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(
        BearerGuard,
        token=token,
        sources={"/webhook": "alert", "/retrain": "manual"},
        on_reject=lambda source: metrics.requests.labels(source, "unauthorized").inc(),
    )
    return app


def answer(submission: Submission, refused: int = status.HTTP_200_OK) -> JSONResponse:
    """The JSON answer to a request: 202 for a new run, ``refused`` otherwise."""
    body: dict[str, Any] = {"outcome": submission.outcome.value}
    if submission.run is not None:
        body["run"] = submission.run.id
    if submission.retry_after_s is not None:
        body["retry_after_s"] = round(submission.retry_after_s, 1)
    code = status.HTTP_202_ACCEPTED if submission.outcome is Outcome.ACCEPTED else refused
    return JSONResponse(body, status_code=code)
