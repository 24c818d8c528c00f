"""A librdkafka producer (confluent-kafka), for publishing from a request path.

The bus's :class:`~bottega.bus.producer.Producer` wraps kafka-python, which is pure Python: its
record accumulator runs on the caller's thread and its sender on a Python thread, both under the
caller's GIL. In the model server that GIL is the request thread's. Publishing one prediction per
request through it cost more than the online feature read did (``docs/serving.md``).

:class:`NativeProducer` hands each message to librdkafka instead: ``publish`` serializes the event
and returns once librdkafka has queued it (a few microseconds). librdkafka batches, sends and
retries on its own threads, which never take the GIL. Its outcomes are reported when someone calls
:meth:`NativeProducer.poll`: the caller owns that loop. Its queue is bounded. When it is full,
``publish`` raises :class:`ProducerFull` at once rather than wait.

Like the bus producer, it keys each event by its entity, waits for every in-sync replica
(``acks=all``) and counts ``bottega_bus_messages_total{outcome="produced"|"produce_failed"}``.
It is also idempotent: a retry after a broker restart never writes a message twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bottega.bus.metrics import BusMetrics
from bottega.events import Event
from bottega.settings import KafkaSettings

log = logging.getLogger(__name__)

# librdkafka's names for the settings the bus producer also uses.
NATIVE_DEFAULTS: dict[str, Any] = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}


class ProducerFull(Exception):
    """librdkafka's queue is full: the message was not accepted."""


class NativeProducer:
    """Events to Kafka through librdkafka; ``on_delivery(ok)`` hears each message's outcome.

    ``on_delivery`` is called from :meth:`poll` and :meth:`flush`, on the caller's thread.
    ``client`` replaces the confluent-kafka producer, for unit tests.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        client_id: str = "bottega",
        metrics: BusMetrics | None = None,
        on_delivery: Callable[[bool], None] | None = None,
        client: Any = None,
        **config: Any,
    ) -> None:
        self._metrics = metrics or BusMetrics.for_registry()
        self._on_delivery = on_delivery
        if client is None:
            from confluent_kafka import Producer as RdKafkaProducer

            options: dict[str, Any] = {
                "bootstrap.servers": kafka.bootstrap_servers,
                "client.id": client_id,
                "request.timeout.ms": kafka.request_timeout_ms,
                # librdkafka's own log lines (a broker down, a reconnect) go through Python's
                # logging, as structured records, instead of raw lines on stderr. They are
                # handed over in ``poll``.
                "logger": log,
                **NATIVE_DEFAULTS,
            }
            options.update(config)
            client = RdKafkaProducer(options)
        self._client = client

    def publish(
        self,
        event: Event,
        *,
        topic: str | None = None,
        payload: bytes | None = None,
        then: Callable[[bool], None] | None = None,
    ) -> None:
        """Queue ``event`` for its topic (or ``topic``), keyed by its entity; ``payload`` is its
        bytes when the caller has them already. ``then(ok)`` hears this message's outcome, after
        ``on_delivery``.

        Raises :class:`ProducerFull` when librdkafka's queue is full, and confluent-kafka's
        ``KafkaException`` for a message it refuses outright (one over ``message.max.bytes``).
        """
        callback = self._delivered
        if then is not None:

            def callback(error: Any, message: Any) -> None:
                self._delivered(error, message)
                then(error is None)

        try:
            self._client.produce(
                topic or event.topic,
                value=payload if payload is not None else event.to_bytes(),
                key=event.key(),
                on_delivery=callback,
            )
        except BufferError as exc:
            raise ProducerFull(str(exc)) from exc

    def poll(self, timeout: float) -> int:
        """Report the outcomes that have arrived, waiting up to ``timeout`` seconds for one.

        The wait happens in librdkafka, without the GIL. Returns how many were reported.
        """
        return int(self._client.poll(timeout))

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every queued message's outcome; how many are left."""
        return int(self._client.flush(timeout))

    def __len__(self) -> int:
        """Messages queued or in flight, their outcome not yet reported."""
        return len(self._client)

    def _delivered(self, error: Any, message: Any) -> None:
        ok = error is None
        produced, failed = self._metrics.produce_outcomes(message.topic())
        (produced if ok else failed).inc()
        if self._on_delivery is not None:
            self._on_delivery(ok)
