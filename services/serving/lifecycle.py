"""Keeping a worker's models current: read the aliases, load what changed, swap it in.

:class:`ModelRefresher` does one refresh. :class:`ModelWatcher` calls it when a
:class:`~bottega.events.ModelEvent` for the model arrives on ``model-events`` and, as a fallback
for a missed event or a ``bottega rollback`` made while Kafka was down, every
``poll_interval_s``. Each worker runs its own watcher: each holds its own models.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bottega.events import ModelEvent
from bottega.registry import CHALLENGER, CHAMPION
from bottega.settings import KafkaSettings
from services.serving.metrics import ServingMetrics
from services.serving.models import LoadedModel, ModelSlots, ModelSource

log = logging.getLogger(__name__)


class ModelRefresher:
    """Brings :class:`ModelSlots` in line with the registry's aliases."""

    def __init__(
        self, source: ModelSource, slots: ModelSlots, metrics: ServingMetrics, *, shadow: bool
    ) -> None:
        self.source = source
        self.slots = slots
        self.metrics = metrics
        self.shadow = shadow
        # The event listener and the poller may both ask at once: one refresh at a time.
        self._lock = threading.Lock()

    def refresh(self, trigger: str) -> None:
        """Read the aliases and swap in any model that changed; never raises."""
        with self._lock:
            try:
                aliases = self.source.aliases()
            except Exception as exc:  # noqa: BLE001 - MLflow's client raises many types
                self._registry_down(exc)
                return
            self.slots.aliases = aliases
            self.slots.registry_reachable = True
            self.metrics.degraded.set(0)
            self._follow(CHAMPION, aliases.get(CHAMPION), trigger)
            wanted = aliases.get(CHALLENGER) if self.shadow else None
            if wanted == aliases.get(CHAMPION):
                wanted = None  # scoring the same model twice is no shadow
            self._follow(CHALLENGER, wanted, trigger)

    def _registry_down(self, exc: Exception) -> None:
        if self.slots.registry_reachable or self.slots.champion is None:
            log.warning("cannot read the model registry", extra={"error": repr(exc)})
        self.slots.registry_reachable = False
        self.metrics.model_load_failures.labels(CHAMPION).inc()
        if self.slots.champion is None:
            cached = self._try(lambda: self.source.load_cached(CHAMPION), CHAMPION)
            if cached is not None:
                self._assign(CHAMPION, cached, "cache")
                log.warning(
                    "serving the cached champion: the registry is unreachable",
                    extra={"version": cached.version},
                )
        if self.slots.champion is not None:
            self.metrics.degraded.set(1)

    def _follow(self, alias: str, version: str | None, trigger: str) -> None:
        current = self._slot(alias)
        if version is None:
            if current is not None:
                self._assign(alias, None, trigger)
            return
        if current is not None and current.version == version:
            return
        loaded = self._try(lambda: self.source.load(version, alias), alias)
        if loaded is not None:
            self._assign(alias, loaded, trigger)

    def _try(self, load: Callable[[], LoadedModel | None], alias: str) -> LoadedModel | None:
        try:
            return load()
        except Exception:
            log.exception("could not load a model", extra={"alias": alias})
            self.metrics.model_load_failures.labels(alias).inc()
            return None

    def _slot(self, alias: str) -> LoadedModel | None:
        return self.slots.champion if alias == CHAMPION else self.slots.challenger

    def _assign(self, alias: str, model: LoadedModel | None, trigger: str) -> None:
        old = self._slot(alias)
        # The swap: one reference assignment. Requests that already read the slot keep theirs.
        if alias == CHAMPION:
            self.slots.champion = model
        else:
            self.slots.challenger = model
        if old is not None:
            self.metrics.model_info.labels(old.name, old.version, alias).set(0)
        if model is not None:
            self.metrics.model_info.labels(model.name, model.version, alias).set(1)
            self.metrics.model_swaps.labels(alias, trigger).inc()
        log.info(
            "model swapped",
            extra={
                "alias": alias,
                "from": old.version if old else None,
                "to": model.version if model else None,
                "trigger": trigger,
            },
        )


class ModelWatcher:
    """Runs the refresher on model events and on a timer, in two daemon threads."""

    def __init__(
        self,
        refresher: ModelRefresher,
        kafka: KafkaSettings,
        model_name: str,
        poll_interval_s: float,
        *,
        consumer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.refresher = refresher
        self.kafka = kafka
        self.model_name = model_name
        self.poll_interval_s = poll_interval_s
        self._consumer_factory = consumer_factory or self._kafka_consumer
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._poll, name="model-poll", daemon=True),
            threading.Thread(target=self._listen, name="model-events", daemon=True),
        ]

    def start(self) -> ModelWatcher:
        """Start both threads."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop both threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.refresher.refresh("poll")

    def _kafka_consumer(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        from bottega.bus.producer import connection_options

        # No group: every worker must see every event, from the moment it starts.
        consumer = KafkaConsumer(
            **connection_options(self.kafka, "bottega-serving"),
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=self.kafka.request_timeout_ms,
        )
        partitions = consumer.partitions_for_topic(ModelEvent.topic) or set()
        if not partitions:
            consumer.close()
            raise RuntimeError(f"topic {ModelEvent.topic} has no partitions yet")
        assigned = [TopicPartition(ModelEvent.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_end(*assigned)
        return consumer

    def _listen(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                consumer = self._consumer_factory()
            except Exception as exc:  # noqa: BLE001 - kafka-python raises many types
                log.warning("cannot listen for model events", extra={"error": repr(exc)})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            try:
                self._consume(consumer)
            except Exception:
                log.exception("model-event listener failed; reconnecting")
            finally:
                consumer.close()

    def _consume(self, consumer: Any) -> None:
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=500)
            relevant = False
            for records in batches.values():
                for record in records:
                    try:
                        event = ModelEvent.from_bytes(record.value)
                    except Exception:  # noqa: BLE001 - a bad event must not stop the listener
                        log.warning("ignoring an unreadable model event")
                        continue
                    relevant |= event.model_name == self.model_name
            if relevant:
                started = time.perf_counter()
                self.refresher.refresh("event")
                log.info(
                    "refreshed on a model event",
                    extra={"seconds": round(time.perf_counter() - started, 3)},
                )
