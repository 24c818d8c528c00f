"""The producer: events keyed by their entity, acknowledged by every in-sync replica."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from bottega.bus.metrics import BusMetrics
from bottega.events import Event
from bottega.settings import KafkaSettings

# The bus's client settings, public so that a benchmark's bare kafka-python baseline can use the
# very same ones. acks=all: a message is acknowledged once every in-sync replica has it.
PRODUCER_DEFAULTS: Mapping[str, Any] = {"acks": "all", "linger_ms": 5}

log = logging.getLogger(__name__)


def connection_options(kafka: KafkaSettings, client_id: str) -> dict[str, Any]:
    """What every kafka-python client of the bus dials with: the bootstrap list, its id, and a
    reconnection backoff capped as Kafka's Java clients cap it (kafka-python's grows to 30 s)."""
    return {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": client_id,
        "reconnect_backoff_max_ms": kafka.reconnect_backoff_max_ms,
    }


class Producer:
    """Publishes events, keyed by their entity, with acks from all in-sync replicas.

    ``publish`` is asynchronous: it returns kafka-python's future at once. Call ``flush`` (or
    ``future.get``) where the caller must know the broker has the message. A send that the
    client refuses before queueing it (no metadata within ``max_block_ms``: the broker is down)
    is tried again until ``outage_wait_s`` (the settings' by default; 0: never) has passed.
    ``client`` replaces the kafka-python producer, for unit tests.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        client_id: str = "bottega",
        metrics: BusMetrics | None = None,
        client: Any = None,
        outage_wait_s: float | None = None,
        **config: Any,
    ) -> None:
        self._metrics = metrics or BusMetrics.for_registry()
        self._outage_wait_s = kafka.outage_wait_s if outage_wait_s is None else outage_wait_s
        if client is None:
            options: dict[str, Any] = {
                **connection_options(kafka, client_id),
                "request_timeout_ms": kafka.request_timeout_ms,
                **PRODUCER_DEFAULTS,
            }
            options.update(config)
            client = KafkaProducer(**options)
        self._producer = client
        self._callbacks: dict[str, tuple[Callable[[Any], None], Callable[[Any], None]]] = {}

    def publish(self, event: Event, *, topic: str | None = None) -> Any:
        """Send ``event`` to its topic (or ``topic``), keyed by its entity."""
        return self.send(topic or event.topic, event.to_bytes(), key=event.key())

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        """Send raw bytes; the bus counts the outcome when the broker answers."""
        future = self._queue(topic, value, key, headers)
        on_success, on_failure = self._callbacks_for(topic)
        future.add_callback(on_success)
        future.add_errback(on_failure)
        return future

    def _queue(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None
    ) -> Any:
        deadline: float | None = None
        while True:
            try:
                return self._producer.send(topic, value=value, key=key, headers=headers)
            except KafkaTimeoutError as exc:
                # Refused before it was queued: nothing was sent, so trying again cannot send
                # it twice. The client has been waiting on the broker for max_block_ms already.
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._outage_wait_s
                    if self._outage_wait_s > 0:
                        log.warning(
                            "the broker cannot take messages; retrying",
                            extra={"topic": topic, "error": str(exc)},
                        )
                if now >= deadline:
                    raise

    def _callbacks_for(self, topic: str) -> tuple[Callable[[Any], None], Callable[[Any], None]]:
        # One pair of callbacks per topic, bound to its counters: no per-message closures or
        # label lookups on kafka-python's I/O thread.
        callbacks = self._callbacks.get(topic)
        if callbacks is None:
            produced, failed = self._metrics.produce_outcomes(topic)
            callbacks = (lambda _: produced.inc(), lambda _: failed.inc())
            self._callbacks[topic] = callbacks
        return callbacks

    def flush(self, timeout: float | None = None) -> None:
        """Block until every sent message is acknowledged, or ``timeout`` seconds pass."""
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush and close the connection."""
        self._producer.close(timeout=timeout)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
