"""The ingest's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    """Registered on the registry the process serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "bottega_ingest_events_total",
            "Transactions by what the aggregation did with them "
            "(applied, late, duplicate, too_late).",
            ["outcome"],
            registry=registry,
        )
        self.labels = Counter(
            "bottega_ingest_labels_total",
            "Labels written to the offline label table, or dropped as duplicates.",
            ["outcome"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "bottega_ingest_batch_seconds",
            "Time per micro-batch, by stage (aggregate, offline, online).",
            ["stage"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.batch_size = Histogram(
            "bottega_ingest_batch_events",
            "Transactions per micro-batch.",
            buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000),
            registry=registry,
        )
        self.lag = Gauge(
            "bottega_ingest_consumer_lag_messages",
            "Messages between the ingest's position and the end of its partitions.",
            ["topic"],
            registry=registry,
        )
        self.last_event_time = Gauge(
            "bottega_ingest_last_event_timestamp_seconds",
            "Event time of the newest transaction written to the feature store.",
            registry=registry,
        )
        self.ready = Gauge(
            "bottega_ingest_ready", "1 once recovery is done and consuming.", registry=registry
        )
