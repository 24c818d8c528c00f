"""Shadow scoring: the challenger scores the same requests, off the request path.

The request puts the transaction and the exact features it used on a bounded queue and returns.
One thread scores them with the challenger and logs each score with ``arm="shadow"``. A full
queue drops the shadow score, and a challenger that raises is counted and logged: neither ever
reaches the champion's answer.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bottega.events import Prediction, Transaction
from services.serving.metrics import ServingMetrics
from services.serving.models import LoadedModel
from services.serving.prediction_log import PredictionLog

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True)
class ShadowJob:
    """What the challenger scores: the champion's inputs, unchanged."""

    model: LoadedModel
    txns: Sequence[Transaction]
    features: Sequence[dict[str, Any]]


class ShadowScorer:
    """One thread that scores queued jobs with the challenger."""

    def __init__(
        self,
        prediction_log: PredictionLog,
        metrics: ServingMetrics,
        *,
        threshold: float,
        capacity: int,
    ) -> None:
        self._log = prediction_log
        self._threshold = threshold
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._scored = metrics.shadow.labels("scored")
        self._failed = metrics.shadow.labels("failed")
        self._dropped = metrics.shadow.labels("dropped")
        self._last_failure_log = 0.0

    def start(self) -> ShadowScorer:
        """Start the scoring thread."""
        self._thread.start()
        return self

    def submit(self, job: ShadowJob) -> None:
        """Queue ``job``; dropped (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._dropped.inc(len(job.txns))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the jobs already queued, for at most ``timeout_s``."""
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            try:
                self._score(job)
            except Exception:
                self._failed.inc(len(job.txns))
                now = time.monotonic()
                if now - self._last_failure_log > 10.0:  # one line per 10 s, not per request
                    self._last_failure_log = now
                    log.exception(
                        "the shadow challenger failed", extra={"version": job.model.version}
                    )

    def _score(self, job: ShadowJob) -> None:
        started = time.perf_counter()
        scores = job.model.score_records(list(job.features))
        elapsed_ms = (time.perf_counter() - started) * 1000.0 / max(len(job.txns), 1)
        for txn, features, score in zip(job.txns, job.features, scores, strict=True):
            value = min(max(float(score), 0.0), 1.0)
            self._log.submit(
                Prediction(
                    event_time=txn.event_time,
                    transaction_id=txn.event_id,
                    card_id=txn.card_id,
                    model_name=job.model.name,
                    model_version=job.model.version,
                    arm="shadow",
                    score=value,
                    threshold=self._threshold,
                    decision=value >= self._threshold,
                    features=features,
                    latency_ms=elapsed_ms,
                )
            )
        self._scored.inc(len(job.txns))
