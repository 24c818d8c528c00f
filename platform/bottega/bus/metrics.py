"""The bus's Prometheus metrics."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram


class BusMetrics:
    """The bus's Prometheus metrics, registered once per registry."""

    _by_registry: dict[int, BusMetrics] = {}
    _lock = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "bottega_bus_messages_total",
            "Messages through the bus, by topic and outcome "
            "(produced, produce_failed, consumed, dead_lettered).",
            ["topic", "outcome"],
            registry=registry,
        )
        self.handler_failures = Counter(
            "bottega_bus_handler_failures_total",
            "Batches whose handler raised; the batch is consumed again after a backoff.",
            ["group"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "bottega_bus_batch_seconds",
            "Time to handle and commit one consumed batch.",
            ["group"],
            registry=registry,
        )
        self._produce: dict[str, tuple[Any, Any]] = {}

    def produce_outcomes(self, topic: str) -> tuple[Any, Any]:
        """``topic``'s (produced, produce_failed) counters, looked up once: producers count
        every message's outcome, on their I/O threads."""
        counters = self._produce.get(topic)
        if counters is None:
            counters = (
                self.messages.labels(topic, "produced"),
                self.messages.labels(topic, "produce_failed"),
            )
            self._produce[topic] = counters
        return counters

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> BusMetrics:
        """The metrics object bound to ``registry`` (the default registry when None)."""
        registry = registry or REGISTRY
        with cls._lock:
            if id(registry) not in cls._by_registry:
                cls._by_registry[id(registry)] = cls(registry)
            return cls._by_registry[id(registry)]
