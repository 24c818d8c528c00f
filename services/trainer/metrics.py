"""The trainer's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class TrainerMetrics:
    """Registered on the registry the process serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "bottega_trainer_requests_total",
            "Retraining requests (alerts and manual) by what the trainer did with them "
            "(accepted, deduplicated, cooling_down, ignored, unauthorized).",
            ["source", "outcome"],
            registry=registry,
        )
        self.runs = Counter(
            "bottega_trainer_runs_total",
            "Finished retraining runs by outcome (promoted, rejected, failed).",
            ["outcome"],
            registry=registry,
        )
        self.failed_attempts = Counter(
            "bottega_trainer_failed_attempts_total",
            "Attempts that failed, retried ones included.",
            registry=registry,
        )
        self.promotions = Counter(
            "bottega_trainer_promotions_total",
            "Runs whose challenger was promoted to champion.",
            registry=registry,
        )
        self.running = Gauge(
            "bottega_trainer_running",
            "1 while a run is in flight (queued, training, promoting or waiting to retry).",
            registry=registry,
        )
        self.last_duration = Gauge(
            "bottega_trainer_last_run_duration_seconds",
            "Wall-clock duration of the last finished run, retries included.",
            registry=registry,
        )
        self.last_finished = Gauge(
            "bottega_trainer_last_run_timestamp_seconds",
            "When the last run finished (Unix time).",
            registry=registry,
        )
