"""The model server's Prometheus metrics.

BentoML serves ``/metrics`` in Prometheus's multiprocess mode (it sets
``PROMETHEUS_MULTIPROC_DIR`` before its workers start), so these are written by every worker and
summed on a scrape. ``bottega_model_info`` is a live-max gauge: 1 for each (version, alias) that
some live worker serves.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


class ServingMetrics:
    """Registered on the registry BentoML serves (the default one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "bottega_prediction_latency_seconds",
            "Time to answer one prediction, by stage (features, model, total).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "bottega_predictions_total",
            "Champion predictions answered, by model version and decision.",
            ["version", "decision"],
            registry=registry,
        )
        self.model_info = Gauge(
            "bottega_model_info",
            "1 for each model version a worker serves, by alias.",
            ["name", "version", "alias"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.missing_features = Counter(
            "bottega_missing_features_total",
            "Lookups that found no row for an entity; the documented defaults were used.",
            ["entity"],
            registry=registry,
        )
        self.model_swaps = Counter(
            "bottega_model_swaps_total",
            "Models swapped in without a restart, by alias and trigger (event, poll, start).",
            ["alias", "trigger"],
            registry=registry,
        )
        self.model_load_failures = Counter(
            "bottega_model_load_failures_total",
            "Attempts to read the registry or load a model that failed.",
            ["alias"],
            registry=registry,
        )
        self.degraded = Gauge(
            "bottega_serving_degraded",
            "1 while a worker serves a cached model because MLflow was unreachable.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.shadow = Counter(
            "bottega_shadow_predictions_total",
            "Shadow scores of the challenger, by outcome (scored, failed, dropped).",
            ["outcome"],
            registry=registry,
        )
        self.prediction_log = Counter(
            "bottega_prediction_log_total",
            "Prediction events, by outcome: queued, published, dropped (buffer full), "
            "failed (the broker refused or was unreachable).",
            ["outcome"],
            registry=registry,
        )
        self.requests_rejected = Counter(
            "bottega_serving_rejected_total",
            "Requests refused before scoring, by reason (invalid, too_large).",
            ["reason"],
            registry=registry,
        )
        # Known series exist from the start, at zero, so that a rate or a dashboard shows 0 rather
        # than no data until the first rejection or failure.
        for reason in ("invalid", "too_large"):
            self.requests_rejected.labels(reason)
        for alias in ("champion", "challenger"):
            self.model_load_failures.labels(alias)
