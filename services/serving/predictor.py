"""The predict path: validate (done by the app), read features, compute the request-time
features, score with the champion, log, shadow.

The champion is read from its slot once per call, so a call that started before a swap finishes
on the model it started with. The features logged are exactly the model's input row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bottega.errors import BottegaError
from bottega.events import Prediction
from bottega.usecases.fraud.features.request import request_features
from services.serving.features import FeatureReader
from services.serving.metrics import ServingMetrics
from services.serving.models import ModelSlots
from services.serving.prediction_log import PredictionLog
from services.serving.schema import Latency, PredictRequest, PredictResponse
from services.serving.shadow import ShadowJob, ShadowScorer

log = logging.getLogger(__name__)


class NoModel(BottegaError):
    """No champion is loaded yet: nothing can be scored."""

    http_status = 503


class FeaturesUnavailable(BottegaError):
    """The online store could not be read."""

    http_status = 503


class ModelFailed(BottegaError):
    """The champion raised, or returned something that is not a probability per row."""

    http_status = 500


class Predictor:
    """Scores transactions with the champion and logs what it used."""

    def __init__(
        self,
        features: FeatureReader,
        slots: ModelSlots,
        prediction_log: PredictionLog,
        metrics: ServingMetrics,
        *,
        threshold: float,
        shadow: ShadowScorer | None = None,
    ) -> None:
        self.features = features
        self.slots = slots
        self.log = prediction_log
        self.metrics = metrics
        self.threshold = threshold
        self.shadow = shadow
        self._stage = {s: metrics.latency.labels(s) for s in ("features", "model", "total")}
        self._missing = {e: metrics.missing_features.labels(e) for e in ("card", "merchant")}

    def predict(self, requests: Sequence[PredictRequest]) -> list[PredictResponse]:
        """The champion's answer for each request, in order."""
        started = time.perf_counter()
        model = self.slots.champion
        if model is None:
            raise NoModel("no champion model is loaded yet", hint="bottega bootstrap")
        challenger = self.slots.challenger

        now = datetime.now(UTC)
        txns = [r.to_transaction(now) for r in requests]
        try:
            stored = self.features.read(txns)
        except Exception as exc:
            log.exception("online feature lookup failed")
            raise FeaturesUnavailable(f"the online feature store failed: {exc!r}") from None
        rows: list[dict[str, Any]] = []
        missing: list[list[str]] = []
        for txn, entity_rows in zip(txns, stored, strict=True):
            rows.append(dict(request_features(txn, entity_rows.card, entity_rows.merchant)))
            missing.append(entity_rows.missing)
            for entity in missing[-1]:
                self._missing[entity].inc()
        featured = time.perf_counter()

        try:
            scores = model.score_records(rows)
        except Exception as exc:
            log.exception("the champion failed", extra={"version": model.version})
            raise ModelFailed(f"model v{model.version} failed: {exc!r}") from None
        if len(scores) != len(txns) or not all(0.0 <= s <= 1.0 for s in scores):
            raise ModelFailed(f"model v{model.version} returned scores outside [0, 1]")
        scored = time.perf_counter()

        features_ms = (featured - started) * 1000.0
        model_ms = (scored - featured) * 1000.0
        total_ms = (time.perf_counter() - started) * 1000.0
        responses = []
        for txn, row, score, gaps in zip(txns, rows, scores, missing, strict=True):
            value = float(score)
            declined = value >= self.threshold
            decision = "decline" if declined else "approve"
            self.metrics.predictions.labels(model.version, decision).inc()
            self.log.submit(
                Prediction(
                    # The scored transaction's time: the monitor's windows run on event time,
                    # which a replay simulates.
                    event_time=txn.event_time,
                    transaction_id=txn.event_id,
                    card_id=txn.card_id,
                    model_name=model.name,
                    model_version=model.version,
                    arm="champion",
                    score=value,
                    threshold=self.threshold,
                    decision=declined,
                    features=row,
                    latency_ms=total_ms,
                )
            )
            responses.append(
                PredictResponse(
                    event_id=txn.event_id,
                    score=value,
                    decision=decision,
                    threshold=self.threshold,
                    model_name=model.name,
                    model_version=model.version,
                    missing=gaps,
                    latency=Latency(features_ms=features_ms, model_ms=model_ms, total_ms=total_ms),
                )
            )
        if self.shadow is not None and challenger is not None:
            self.shadow.submit(ShadowJob(challenger, txns, rows))
        self._stage["features"].observe(features_ms / 1000.0)
        self._stage["model"].observe(model_ms / 1000.0)
        self._stage["total"].observe(time.perf_counter() - started)
        return responses
